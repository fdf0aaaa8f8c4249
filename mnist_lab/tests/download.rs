//! The downloader against a tiny HTTP/1.1 server on 127.0.0.1: success, checksum
//! mismatches, 404s, server errors, broken transfers, stalls, refused connections and
//! unwritable cache folders. No internet needed; every test takes well under a few seconds.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use md5::{Digest, Md5};
use mnist_lab::Error;
use mnist_lab::data::{Downloader, FILES, Mnist, TRAIN_IMAGES, TRAIN_LABELS, write_idx_dir};

/// What the server answers to one request.
#[derive(Clone)]
enum Reply {
    /// A status and a body.
    Send(u16, Vec<u8>),
    /// Headers promising the whole body, then only its first half, then a closed socket.
    Cut(Vec<u8>),
    /// Nothing at all, for longer than any test's timeout.
    Hang,
}

/// A local HTTP server answering each path with a list of replies, one per request (the
/// last one repeats); unknown paths get a 404. It counts requests per path.
struct Server {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Server {
    fn start(routes: HashMap<String, Vec<Reply>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let routes = Arc::new(routes);
        let counter = Arc::clone(&hits);
        // The thread ends with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let routes = Arc::clone(&routes);
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || handle(stream, &routes, &counter));
            }
        });
        Server { addr, hits }
    }

    /// The base URL of mirror `name` on this server.
    fn mirror(&self, name: &str) -> String {
        format!("http://{}/{name}/", self.addr)
    }

    /// How many requests asked for `path`.
    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

fn handle(
    stream: TcpStream,
    routes: &HashMap<String, Vec<Reply>>,
    hits: &Mutex<HashMap<String, usize>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers, up to the empty line.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let count = {
        let mut hits = hits.lock().unwrap();
        let count = hits.entry(path.clone()).or_insert(0);
        *count += 1;
        *count
    };
    let reply = match routes.get(&path) {
        Some(replies) => replies[(count - 1).min(replies.len() - 1)].clone(),
        None => Reply::Send(404, b"not found".to_vec()),
    };
    let mut stream = stream;
    let head = |status: u16, length: usize| {
        format!(
            "HTTP/1.1 {status} Test\r\nContent-Length: {length}\r\nContent-Type: \
             application/octet-stream\r\nConnection: close\r\n\r\n"
        )
    };
    let _ = match reply {
        Reply::Send(status, body) => stream
            .write_all(head(status, body.len()).as_bytes())
            .and_then(|()| stream.write_all(&body)),
        Reply::Cut(body) => stream
            .write_all(head(200, body.len()).as_bytes())
            .and_then(|()| stream.write_all(&body[..body.len() / 2])),
        Reply::Hang => {
            std::thread::sleep(Duration::from_secs(5));
            Ok(())
        }
    };
    let _ = stream.flush();
}

/// The four files of a small synthetic data set, gzip-compressed, with their MD5s.
struct Files {
    data: Mnist,
    bytes: HashMap<String, Vec<u8>>,
}

impl Files {
    fn new() -> Files {
        let data = Mnist::synthetic(40, 20, 5);
        let dir = tempfile::tempdir().unwrap();
        write_idx_dir(dir.path(), &data, true).unwrap();
        let bytes = FILES
            .iter()
            .map(|name| {
                (
                    name.to_string(),
                    std::fs::read(dir.path().join(name)).unwrap(),
                )
            })
            .collect();
        Files { data, bytes }
    }

    fn md5(&self, name: &str) -> String {
        format!("{:x}", Md5::digest(&self.bytes[name]))
    }

    /// The `(name, md5)` list for a `Downloader`.
    fn list(&self) -> Vec<(String, String)> {
        FILES
            .iter()
            .map(|name| (name.to_string(), self.md5(name)))
            .collect()
    }

    /// Routes serving every file under `/{mirror}/` with `reply`.
    fn routes(
        &self,
        mirror: &str,
        reply: impl Fn(Vec<u8>) -> Vec<Reply>,
    ) -> HashMap<String, Vec<Reply>> {
        self.bytes
            .iter()
            .map(|(name, bytes)| (format!("/{mirror}/{name}"), reply(bytes.clone())))
            .collect()
    }
}

fn ok(body: Vec<u8>) -> Vec<Reply> {
    vec![Reply::Send(200, body)]
}

fn downloader(mirrors: Vec<String>, files: Vec<(String, String)>) -> Downloader {
    Downloader {
        mirrors,
        files,
        retries: 3,
        backoff: Duration::from_millis(5),
        timeout: Duration::from_secs(2),
    }
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    names.sort();
    names
}

#[test]
fn default_downloader_uses_the_published_mirrors_and_checksums() {
    let d = Downloader::default();
    assert_eq!(
        d.mirrors,
        [
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/"
        ]
    );
    assert_eq!(
        d.files[0],
        (
            TRAIN_IMAGES.to_string(),
            "f68b3c2dcbeaaa9fbdd348bbdeb94873".to_string()
        )
    );
    assert_eq!(d.files.len(), 4);
    assert_eq!(
        (d.retries, d.backoff, d.timeout),
        (3, Duration::from_secs(1), Duration::from_secs(30))
    );
}

#[test]
fn downloads_checks_and_reports_each_file() {
    let files = Files::new();
    let server = Server::start(files.routes("m1", ok));
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("nested").join("mnist");
    let d = downloader(vec![server.mirror("m1")], files.list());

    let mut lines = Vec::new();
    let got = d
        .fetch_missing_with(&dir, &mut |line| lines.push(line.to_string()))
        .unwrap();
    assert_eq!(got, FILES.map(String::from).to_vec());
    assert_eq!(lines.len(), 4, "{lines:?}");
    for (line, name) in lines.iter().zip(FILES) {
        assert!(line.starts_with(&format!("Downloaded {name} (")), "{line}");
        assert!(
            line.ends_with(&format!("from {}{name}", server.mirror("m1"))),
            "{line}"
        );
    }
    assert!(lines[1].contains("bytes)"), "{}", lines[1]);
    // Exactly the four files, nothing half-written beside them.
    assert_eq!(listing(&dir), sorted(&FILES));
    for name in FILES {
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), files.bytes[name]);
    }
    let data = Mnist::from_dir(&dir).unwrap();
    assert_eq!(data.train.images(), files.data.train.images());
    assert_eq!(data.test.labels(), files.data.test.labels());

    // Everything present: no request at all.
    let before = server.total_hits();
    assert!(d.fetch_missing(&dir).unwrap().is_empty());
    assert_eq!(server.total_hits(), before);
}

#[test]
fn stale_temporary_files_are_cleaned_up() {
    let files = Files::new();
    let server = Server::start(files.routes("m1", ok));
    let cache = tempfile::tempdir().unwrap();
    let stale = cache.path().join(format!(".{TRAIN_LABELS}.part-999999-0"));
    let fresh = cache.path().join(format!(".{TRAIN_LABELS}.part-999998-0"));
    let other = cache.path().join("notes.txt");
    for path in [&stale, &fresh, &other] {
        std::fs::write(path, b"half a file").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    for path in [&stale, &other] {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(two_hours_ago).unwrap();
    }
    let d = downloader(vec![server.mirror("m1")], files.list());
    d.fetch_missing(cache.path()).unwrap();
    assert!(!stale.exists(), "a stale temporary file was left behind");
    assert!(
        fresh.exists(),
        "a running download's temporary file was removed"
    );
    assert!(other.exists(), "an unrelated file was removed");
}

#[test]
fn only_missing_files_are_downloaded_and_load_with_parses_them() {
    let files = Files::new();
    let server = Server::start(files.routes("m1", ok));
    let cache = tempfile::tempdir().unwrap();
    for name in FILES.iter().filter(|&&name| name != TRAIN_LABELS) {
        std::fs::write(cache.path().join(name), &files.bytes[*name]).unwrap();
    }
    let d = downloader(vec![server.mirror("m1")], files.list());
    let mut lines = Vec::new();
    let got = d
        .fetch_missing_with(cache.path(), &mut |line| lines.push(line.to_string()))
        .unwrap();
    assert_eq!(got, vec![TRAIN_LABELS.to_string()]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(server.total_hits(), 1);

    // load_with: downloads what is missing (here nothing), then parses the folder.
    std::fs::remove_file(cache.path().join(TRAIN_IMAGES)).unwrap();
    let data = Mnist::load_with(cache.path(), &d).unwrap();
    assert_eq!(data.train.labels(), files.data.train.labels());
    assert_eq!(data.source, cache.path().display().to_string());
    assert_eq!(server.hits(&format!("/m1/{TRAIN_IMAGES}")), 1);
    assert_eq!(listing(cache.path()), sorted(&FILES));
}

#[test]
fn checksum_mismatch_retries_once_then_fails_without_leaving_a_file() {
    let files = Files::new();
    let server = Server::start(files.routes("m1", ok));
    let cache = tempfile::tempdir().unwrap();
    let wrong = "0123456789abcdef0123456789abcdef".to_string();
    let d = downloader(
        vec![server.mirror("m1")],
        vec![(TRAIN_LABELS.to_string(), wrong.clone())],
    );
    let error = d.fetch_missing(cache.path()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::Download { .. }), "{error:?}");
    assert!(message.contains(TRAIN_LABELS), "{message}");
    assert!(message.contains(&wrong), "{message}");
    assert!(message.contains(&files.md5(TRAIN_LABELS)), "{message}");
    assert!(message.contains("checksum mismatch"), "{message}");
    assert_eq!(server.hits(&format!("/m1/{TRAIN_LABELS}")), 2);
    assert!(
        listing(cache.path()).is_empty(),
        "{:?}",
        listing(cache.path())
    );
}

#[test]
fn checksum_mismatch_moves_on_to_the_next_mirror() {
    let files = Files::new();
    let mut routes = files.routes("good", ok);
    routes.extend(files.routes("bad", |_| vec![Reply::Send(200, b"garbage".to_vec())]));
    let server = Server::start(routes);
    let cache = tempfile::tempdir().unwrap();
    let d = downloader(
        vec![server.mirror("bad"), server.mirror("good")],
        files.list(),
    );
    let data = Mnist::load_with(cache.path(), &d).unwrap();
    assert_eq!(data.test.images(), files.data.test.images());
    assert_eq!(server.hits(&format!("/bad/{TRAIN_IMAGES}")), 2);
    assert_eq!(server.hits(&format!("/good/{TRAIN_IMAGES}")), 1);
    assert_eq!(listing(cache.path()), sorted(&FILES));
}

#[test]
fn not_found_on_the_first_mirror_uses_the_second() {
    let files = Files::new();
    let server = Server::start(files.routes("m2", ok));
    let cache = tempfile::tempdir().unwrap();
    let d = downloader(vec![server.mirror("m1"), server.mirror("m2")], files.list());
    let mut lines = Vec::new();
    d.fetch_missing_with(cache.path(), &mut |line| lines.push(line.to_string()))
        .unwrap();
    for name in FILES {
        // A 404 is not retried.
        assert_eq!(server.hits(&format!("/m1/{name}")), 1);
        assert_eq!(server.hits(&format!("/m2/{name}")), 1);
    }
    assert!(lines.iter().all(|line| line.contains("/m2/")), "{lines:?}");
    assert_eq!(listing(cache.path()), sorted(&FILES));
}

#[test]
fn not_found_everywhere_is_an_error() {
    let files = Files::new();
    let server = Server::start(HashMap::new());
    let cache = tempfile::tempdir().unwrap();
    let d = downloader(vec![server.mirror("m1"), server.mirror("m2")], files.list());
    let error = Mnist::load_with(cache.path(), &d).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::Download { .. }), "{error:?}");
    assert!(message.contains(TRAIN_IMAGES), "{message}");
    assert!(message.contains("404"), "{message}");
    assert!(
        message.contains("/m1/") && message.contains("/m2/"),
        "{message}"
    );
    assert_eq!(server.total_hits(), 2);
    assert!(listing(cache.path()).is_empty());
}

#[test]
fn refused_connections_say_the_machine_looks_offline() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let files = Files::new();
    let cache = tempfile::tempdir().unwrap();
    let d = downloader(
        vec![
            format!("http://127.0.0.1:{port}/a/"),
            format!("http://127.0.0.1:{port}/b"),
        ],
        files.list(),
    );
    let error = Mnist::load_with(cache.path(), &d).unwrap_err();
    let message = error.to_string();
    match &error {
        Error::DataNotFound {
            missing,
            looked_in,
            download,
        } => {
            assert_eq!(missing, &FILES.map(String::from).to_vec());
            assert_eq!(looked_in, &vec![cache.path().to_path_buf()]);
            assert!(download.is_some());
        }
        other => panic!("expected DataNotFound, got {other:?}"),
    }
    assert!(message.contains("offline"), "{message}");
    assert!(message.contains("MNIST_LAB_DATA"), "{message}");
    assert!(
        message.contains(&cache.path().display().to_string()),
        "{message}"
    );
    for name in FILES {
        assert!(message.contains(name), "{message}");
    }
    assert!(listing(cache.path()).is_empty());
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let files = Files::new();
    let server = Server::start(files.routes("m1", |body| {
        vec![Reply::Send(500, b"oops".to_vec()), Reply::Send(200, body)]
    }));
    let cache = tempfile::tempdir().unwrap();
    let d = downloader(vec![server.mirror("m1")], files.list());
    let data = Mnist::load_with(cache.path(), &d).unwrap();
    assert_eq!(data.train.len(), 40);
    for name in FILES {
        assert_eq!(server.hits(&format!("/m1/{name}")), 2);
    }
    assert_eq!(listing(cache.path()), sorted(&FILES));
}

#[test]
fn persistent_server_errors_use_every_try_then_the_next_mirror() {
    let files = Files::new();
    let mut routes = files.routes("down", |_| vec![Reply::Send(503, Vec::new())]);
    routes.extend(files.routes("up", ok));
    let server = Server::start(routes);
    let cache = tempfile::tempdir().unwrap();
    let mut d = downloader(
        vec![server.mirror("down"), server.mirror("up")],
        files.list(),
    );
    d.files.truncate(1);
    assert_eq!(d.fetch_missing(cache.path()).unwrap(), vec![TRAIN_IMAGES]);
    assert_eq!(server.hits(&format!("/down/{TRAIN_IMAGES}")), 3);
    assert_eq!(server.hits(&format!("/up/{TRAIN_IMAGES}")), 1);

    // With only the failing mirror, the error says how it failed and how often.
    let empty = tempfile::tempdir().unwrap();
    d.mirrors.truncate(1);
    let message = d.fetch_missing(empty.path()).unwrap_err().to_string();
    assert!(
        message.contains("HTTP 503") && message.contains("3 tries"),
        "{message}"
    );
    assert!(listing(empty.path()).is_empty());
}

#[test]
fn broken_transfers_are_retried_and_leave_nothing_behind() {
    let files = Files::new();
    let server = Server::start(files.routes("m1", |body| {
        vec![Reply::Cut(body.clone()), Reply::Send(200, body)]
    }));
    let cache = tempfile::tempdir().unwrap();
    let mut d = downloader(vec![server.mirror("m1")], files.list());
    d.files.truncate(1);
    d.fetch_missing(cache.path()).unwrap();
    assert_eq!(server.hits(&format!("/m1/{TRAIN_IMAGES}")), 2);
    assert_eq!(listing(cache.path()), vec![TRAIN_IMAGES.to_string()]);

    let cut_only = Server::start(files.routes("m1", |body| vec![Reply::Cut(body)]));
    let empty = tempfile::tempdir().unwrap();
    d.mirrors = vec![cut_only.mirror("m1")];
    let error = d.fetch_missing(empty.path()).unwrap_err();
    assert!(matches!(error, Error::Download { .. }), "{error:?}");
    assert_eq!(cut_only.total_hits(), 3);
    assert!(
        listing(empty.path()).is_empty(),
        "{:?}",
        listing(empty.path())
    );
}

#[test]
fn stalled_servers_time_out_and_are_retried() {
    let files = Files::new();
    let server = Server::start(files.routes("m1", |_| vec![Reply::Hang]));
    let cache = tempfile::tempdir().unwrap();
    let mut d = downloader(vec![server.mirror("m1")], files.list());
    d.files.truncate(1);
    d.retries = 2;
    d.timeout = Duration::from_millis(300);
    let error = d.fetch_missing(cache.path()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("timeout") || message.contains("timed out"),
        "{message}"
    );
    assert_eq!(server.hits(&format!("/m1/{TRAIN_IMAGES}")), 2);
    assert!(listing(cache.path()).is_empty());
}

#[cfg(unix)]
#[test]
fn read_only_cache_folder_is_an_io_error_naming_it() {
    use std::os::unix::fs::PermissionsExt;

    let files = Files::new();
    let server = Server::start(files.routes("m1", ok));
    let cache = tempfile::tempdir().unwrap();
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let probe = cache.path().join("probe");
    let writable = std::fs::write(&probe, b"x").is_ok();
    if writable {
        // Running as root: permissions do not stop us, so there is nothing to test.
        std::fs::remove_file(&probe).unwrap();
    } else {
        let d = downloader(vec![server.mirror("m1")], files.list());
        let error = d.fetch_missing(cache.path()).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, Error::Io { .. }), "{error:?}");
        assert!(
            message.contains(&cache.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("not writable"), "{message}");
        assert_eq!(server.total_hits(), 0);
    }
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn cache_folder_that_cannot_be_created_is_an_io_error_naming_it() {
    let files = Files::new();
    let server = Server::start(files.routes("m1", ok));
    let parent = tempfile::tempdir().unwrap();
    let blocker = parent.path().join("a-file");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let dir = blocker.join("mnist");
    let d = downloader(vec![server.mirror("m1")], files.list());
    let error = Mnist::load_with(&dir, &d).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&dir.display().to_string()),
        "{error}"
    );
    assert_eq!(server.total_hits(), 0);
}
