//! Hand-written `flex` kernels for [`Linear`](super::Linear), as a Burn backend extension.
//!
//! Burn's `linear` on the flex backend is three ops (matmul, broadcast bias add) forward and
//! three matmuls and a sum backward, and burn-flex allocates each matmul's output zeroed and
//! then copies it once more into an aligned buffer. Here the forward is one gemm call that
//! adds to the bias rows already in the output, and the backward writes each gradient once,
//! straight from gemm. The arithmetic is gemm's, as in Burn, so the results agree with Burn's
//! layer to rounding (the tests in `linear.rs` check it).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::tensor::{DType, TensorData};

/// The fused fully-connected layer, on flex tensors with or without autodiff.
#[backend_extension(Flex, Autodiff)]
pub trait LinearBackend: Backend {
    /// `input @ weight + bias`: input `[batch, d_input]`, weight `[d_input, d_output]`,
    /// bias `[d_output]`; all `f32`.
    fn fused_linear(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl LinearBackend for Flex {
    fn fused_linear(input: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        linear_forward(&input, &weight, &bias)
    }
}

impl<C: CheckpointStrategy> LinearBackend for Autodiff<Flex, C> {
    fn fused_linear(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match LinearBackward
            .prepare::<C>([input.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, w) = (input.primitive().clone(), weight.primitive().clone());
                let output = linear_forward(&x, &w, bias.primitive());
                prep.finish((x, w), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(linear_forward(
                input.primitive(),
                weight.primitive(),
                bias.primitive(),
            )),
        }
    }
}

/// The backward step of [`LinearBackend::fused_linear`]; its state is the input and the weight.
#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_input, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node); // [batch, d_output]
        let (input, weight) = ops.state;
        let g = Matrix::of(&grad);
        if let Some(node) = node_input {
            // d input = grad @ weight^T: [batch, d_output] x [d_output, d_input]
            let w = Matrix::of(&weight);
            grads.register::<Flex>(node.id, product(g, w.transposed()));
        }
        if let Some(node) = node_weight {
            // d weight = input^T @ grad: [d_input, batch] x [batch, d_output]
            let x = Matrix::of(&input);
            grads.register::<Flex>(node.id, product(x.transposed(), g));
        }
        if let Some(node) = node_bias {
            // d bias = grad summed over the batch
            let mut sums = vec![0.0f32; g.cols];
            for row in 0..g.rows {
                for (col, sum) in sums.iter_mut().enumerate() {
                    *sum += g.get(row, col);
                }
            }
            grads.register::<Flex>(node.id, tensor(sums, vec![g.cols]));
        }
    }
}

/// A strided view of a 2-D `f32` flex tensor (a 1-D one is one row).
#[derive(Clone, Copy)]
struct Matrix<'a> {
    data: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a> Matrix<'a> {
    fn of(tensor: &'a FlexTensor) -> Self {
        assert_eq!(tensor.dtype(), DType::F32, "fused linear: f32 tensors only");
        let layout = tensor.layout();
        let (dims, strides) = (layout.shape().dims::<2>(), layout.strides());
        Self {
            data: tensor.storage(),
            offset: layout.start_offset(),
            rows: dims[0],
            cols: dims[1],
            row_stride: strides[0],
            col_stride: strides[1],
        }
    }

    fn row_vector(tensor: &'a FlexTensor) -> Self {
        assert_eq!(tensor.dtype(), DType::F32, "fused linear: f32 tensors only");
        let layout = tensor.layout();
        Self {
            data: tensor.storage(),
            offset: layout.start_offset(),
            rows: 1,
            cols: layout.shape().dims::<1>()[0],
            row_stride: 0,
            col_stride: layout.strides()[0],
        }
    }

    fn transposed(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn get(&self, row: usize, col: usize) -> f32 {
        let at =
            self.offset as isize + row as isize * self.row_stride + col as isize * self.col_stride;
        self.data[at as usize]
    }

    fn ptr(&self) -> *const f32 {
        self.data[self.offset..].as_ptr()
    }
}

/// `input @ weight + bias`, as one gemm call accumulating onto the bias rows.
fn linear_forward(input: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> FlexTensor {
    let (x, w, b) = (
        Matrix::of(input),
        Matrix::of(weight),
        Matrix::row_vector(bias),
    );
    assert_eq!(
        x.cols, w.rows,
        "fused linear: input and weight do not chain"
    );
    assert_eq!(w.cols, b.cols, "fused linear: weight and bias do not match");
    let bias_row: Vec<f32> = (0..b.cols).map(|col| b.get(0, col)).collect();
    let mut out = Vec::with_capacity(x.rows * w.cols);
    for _ in 0..x.rows {
        out.extend_from_slice(&bias_row);
    }
    // SAFETY: `out` holds the `x.rows * w.cols` values of the output, row by row.
    unsafe { gemm_into(out.as_mut_ptr(), x, w, true) };
    tensor(out, vec![x.rows, w.cols])
}

/// `lhs @ rhs` into a new tensor, every value written once by gemm.
fn product(lhs: Matrix, rhs: Matrix) -> FlexTensor {
    let len = lhs.rows * rhs.cols;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    if lhs.cols == 0 {
        out.resize(len, 0.0);
    } else {
        // SAFETY: the capacity holds `len` values; gemm with `read_dst = false` and a
        // non-empty inner dimension writes every one of them and reads none, so after the
        // call all `len` values are initialised.
        unsafe {
            gemm_into(out.as_mut_ptr(), lhs, rhs, false);
            out.set_len(len);
        }
    }
    tensor(out, vec![lhs.rows, rhs.cols])
}

/// `out = lhs @ rhs`, or `out += lhs @ rhs` when `accumulate`.
///
/// # Safety
///
/// `out` must be valid for writes (and, when `accumulate`, reads of initialised values) of
/// `lhs.rows * rhs.cols` values, row-major `[lhs.rows, rhs.cols]`.
unsafe fn gemm_into(out: *mut f32, lhs: Matrix, rhs: Matrix, accumulate: bool) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(
        rhs.rows, k,
        "fused linear: the product's shapes do not chain"
    );
    // burn-flex's threshold: below 192^3 multiply-adds the threads cost more than they give.
    let parallelism = if m * n * k >= 192 * 192 * 192 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `lhs` and `rhs` borrow live tensor storage that covers every index their
    // shapes and strides reach; `out` is the caller's `m * n` row-major values.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out,
            1,
            n as isize,
            accumulate,
            lhs.ptr(),
            lhs.col_stride,
            lhs.row_stride,
            rhs.ptr(),
            rhs.col_stride,
            rhs.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A contiguous flex tensor owning `values`, without copying them.
fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}
