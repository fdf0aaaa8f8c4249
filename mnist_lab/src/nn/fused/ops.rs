//! Hand-written `flex` kernels for [`Linear`](crate::nn::Linear) and
//! [`Conv2d`](crate::nn::Conv2d), as Burn backend extensions with their own backward steps
//! (see [the door's docs](super)), and the SGD update that [`super::sgd`] steps with.
//!
//! The arithmetic is gemm's (the matmul library of Burn's flex backend) and plain sums; the
//! tests in `nn` compare both ops' outputs and gradients with Burn's layers.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

/// The lecture's two layers as single ops, on flex tensors with or without autodiff.
#[backend_extension(Flex, Autodiff)]
pub trait LayerBackend: Backend {
    /// `input @ weight + bias`: input `[batch, d_input]`, weight `[d_input, d_output]`,
    /// bias `[d_output]`; all `f32`.
    fn fused_linear(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The plain convolution (stride 1, no padding, no dilation, one group) of `input`
    /// `[batch, channels, height, width]` with `weight` `[filters, channels, kh, kw]`, plus
    /// `bias` `[filters]`; all `f32`. Output: `[batch, filters, height - kh + 1, width - kw + 1]`.
    fn fused_conv2d(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl LayerBackend for Flex {
    fn fused_linear(input: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        linear_forward(&input, &weight, &bias)
    }

    fn fused_conv2d(input: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        conv_forward(&input, &weight, &bias)
    }
}

impl<C: CheckpointStrategy> LayerBackend for Autodiff<Flex, C> {
    fn fused_linear(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        record::<C>([input, weight, bias], linear_forward, linear_backward)
    }

    fn fused_conv2d(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        record::<C>([input, weight, bias], conv_forward, conv_backward)
    }
}

/// [`LayerBackend::fused_linear`] on tensors; `D` is 2 (`[batch, d_input]`).
pub(crate) fn linear<const D: usize>(
    input: Tensor<D>,
    weight: Tensor<2>,
    bias: Tensor<1>,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as LayerBackend>::fused_linear(
        input.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// [`LayerBackend::fused_conv2d`] on tensors.
pub(crate) fn conv2d(input: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as LayerBackend>::fused_conv2d(
        input.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// [`SgdBackend::sgd_update`] on tensors.
pub(crate) fn sgd_update<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    learning_rate: f64,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as SgdBackend>::sgd_update(
        param.into_dispatch(),
        grad.into_dispatch(),
        learning_rate as f32,
    ))
}

/// Runs `forward` on the values of `[input, weight, bias]` and, when any of them is in the
/// gradient graph, records `backward` for the backward pass.
fn record<C: CheckpointStrategy>(
    [input, weight, bias]: [FloatTensor<Autodiff<Flex, C>>; 3],
    forward: fn(&FlexTensor, &FlexTensor, &FlexTensor) -> FlexTensor,
    backward: LayerGradients,
) -> FloatTensor<Autodiff<Flex, C>> {
    match (LayerBackward {
        gradients: backward,
    })
    .prepare::<C>([input.node(), weight.node(), bias.node()])
    .compute_bound()
    .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (x, w) = (input.primitive().clone(), weight.primitive().clone());
            let output = forward(&x, &w, bias.primitive());
            prep.finish((x, w), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(
            input.primitive(),
            weight.primitive(),
            bias.primitive(),
        )),
    }
}

/// The backward step of a fused layer: `gradients` turns the output's gradient into the
/// input's, the weight's and the bias's (those in the graph); its state is the input and the
/// weight.
#[derive(Debug)]
struct LayerBackward {
    gradients: LayerGradients,
}

/// A fused layer's backward: `(input, weight, output gradient, wanted) -> gradients`.
type LayerGradients =
    fn(&FlexTensor, &FlexTensor, &FlexTensor, [bool; 3]) -> [Option<FlexTensor>; 3];

impl Backward<Flex, 3> for LayerBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_input, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (input, weight) = ops.state;
        let wanted = [&node_input, &node_weight, &node_bias].map(Option::is_some);
        let gradients = (self.gradients)(&input, &weight, &grad, wanted);
        for (node, gradient) in [node_input, node_weight, node_bias]
            .into_iter()
            .zip(gradients)
        {
            if let (Some(node), Some(gradient)) = (node, gradient) {
                grads.register::<Flex>(node.id, gradient);
            }
        }
    }
}

/// The gradients of [`linear_forward`] for input, weight and bias (those `wanted`), from the
/// output's gradient `grad` `[batch, d_output]`.
fn linear_backward(
    input: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    [want_input, want_weight, want_bias]: [bool; 3],
) -> [Option<FlexTensor>; 3] {
    let g = Matrix::of(grad);
    [
        // d input = grad @ weight^T: [batch, d_output] x [d_output, d_input]
        want_input.then(|| product(g, Matrix::of(weight).transposed())),
        // d weight = input^T @ grad: [d_input, batch] x [batch, d_output]
        want_weight.then(|| product(Matrix::of(input).transposed(), g)),
        // d bias = grad summed over the batch
        want_bias.then(|| {
            let mut sums = vec![0.0f32; g.cols];
            for row in contiguous_values(grad).chunks_exact(g.cols) {
                sums.iter_mut()
                    .zip(row)
                    .for_each(|(sum, value)| *sum += value);
            }
            tensor(sums, vec![g.cols])
        }),
    ]
}

/// A strided view of a 2-D `f32` flex tensor.
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
        assert_eq!(tensor.dtype(), DType::F32, "fused ops: f32 tensors only");
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

    /// A dense row-major matrix over `data`.
    fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        Self {
            data,
            offset: 0,
            rows,
            cols,
            row_stride: cols as isize,
            col_stride: 1,
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

    fn ptr(&self) -> *const f32 {
        self.data[self.offset..].as_ptr()
    }
}

/// `input @ weight + bias`, as one gemm call accumulating onto the bias rows.
fn linear_forward(input: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> FlexTensor {
    let (x, w, bias) = (
        Matrix::of(input),
        Matrix::of(weight),
        contiguous_values(bias),
    );
    assert_eq!(
        x.cols, w.rows,
        "fused linear: input and weight do not chain"
    );
    assert_eq!(
        w.cols,
        bias.len(),
        "fused linear: weight and bias do not match"
    );
    let mut out = Vec::with_capacity(x.rows * w.cols);
    for _ in 0..x.rows {
        out.extend_from_slice(&bias);
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
    assert_eq!(rhs.rows, k, "fused ops: the product's shapes do not chain");
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

/// The sizes of a plain convolution.
#[derive(Clone, Copy, Debug)]
struct ConvShape {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    filters: usize,
    kernel: [usize; 2],
}

impl ConvShape {
    fn of(input: &FlexTensor, weight: &FlexTensor) -> Self {
        let [batch, channels, height, width] = input.layout().shape().dims::<4>();
        let [filters, weight_channels, kh, kw] = weight.layout().shape().dims::<4>();
        assert_eq!(
            channels, weight_channels,
            "fused conv2d: channels do not match"
        );
        assert!(
            kh <= height && kw <= width,
            "fused conv2d: kernel larger than the input"
        );
        Self {
            batch,
            channels,
            height,
            width,
            filters,
            kernel: [kh, kw],
        }
    }

    fn out_height(&self) -> usize {
        self.height - self.kernel[0] + 1
    }

    fn out_width(&self) -> usize {
        self.width - self.kernel[1] + 1
    }

    /// Output positions per image: the columns of the column matrix.
    fn positions(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// Values under the kernel: the rows of the column matrix.
    fn patch(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Calls `visit(column_run, image_run)` for each run of `out_width` values that row
    /// `(c, i, j)` of one image's column matrix `[patch, positions]` shares with the image
    /// `[channels, height, width]` (`input[c, y + i, j..j + out_width]`), in row order.
    fn runs(&self, mut visit: impl FnMut(std::ops::Range<usize>, std::ops::Range<usize>)) {
        let [kh, kw] = self.kernel;
        let (out_width, positions) = (self.out_width(), self.positions());
        for row in 0..self.patch() {
            let (c, i, j) = (row / (kh * kw), row / kw % kh, row % kw);
            for y in 0..self.out_height() {
                let column = row * positions + y * out_width;
                let pixel = (c * self.height + y + i) * self.width + j;
                visit(column..column + out_width, pixel..pixel + out_width);
            }
        }
    }
}

/// One image's patches as columns (im2col): `columns` is `[patch, positions]`.
fn image_to_columns(shape: &ConvShape, image: &[f32], columns: &mut [f32]) {
    shape.runs(|to, from| columns[to].copy_from_slice(&image[from]));
}

/// Adds one image's columns back onto its pixels (the transpose of [`image_to_columns`]).
fn columns_to_image(shape: &ConvShape, columns: &[f32], image: &mut [f32]) {
    shape.runs(|from, to| {
        for (pixel, value) in image[to].iter_mut().zip(&columns[from]) {
            *pixel += value;
        }
    });
}

/// The values of `tensor` in row-major order, copied only when its layout is not contiguous.
fn contiguous_values(tensor: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    assert_eq!(tensor.dtype(), DType::F32, "fused ops: f32 tensors only");
    let layout = tensor.layout();
    match layout.contiguous_offsets() {
        Some((start, end)) => std::borrow::Cow::Borrowed(&tensor.storage::<f32>()[start..end]),
        None => std::borrow::Cow::Owned(tensor.clone().into_data().try_into_vec::<f32>().unwrap()),
    }
}

/// The convolution, image by image in parallel: the image's columns, then one gemm
/// accumulating `weight [filters, patch] @ columns [patch, positions]` onto the bias rows.
fn conv_forward(input: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> FlexTensor {
    let shape = ConvShape::of(input, weight);
    let (x, w, b) = (
        contiguous_values(input),
        contiguous_values(weight),
        contiguous_values(bias),
    );
    assert_eq!(b.len(), shape.filters, "fused conv2d: one bias per filter");
    let (patch, positions) = (shape.patch(), shape.positions());
    let filters = Matrix::dense(&w, shape.filters, patch);
    let out_len = shape.filters * positions;
    let mut out: Vec<f32> = Vec::with_capacity(shape.batch * out_len);
    for _ in 0..shape.batch {
        for &value in b.iter() {
            out.extend(std::iter::repeat_n(value, positions));
        }
    }
    out.par_chunks_mut(out_len).enumerate().for_each_init(
        || vec![0.0f32; patch * positions],
        |columns, (image, out)| {
            let pixels = &x[image * shape.image_len()..][..shape.image_len()];
            image_to_columns(&shape, pixels, columns);
            // SAFETY: `out` is this image's `filters * positions` initialised values.
            unsafe {
                gemm_into(
                    out.as_mut_ptr(),
                    filters,
                    Matrix::dense(columns, patch, positions),
                    true,
                )
            };
        },
    );
    let out_dims = vec![
        shape.batch,
        shape.filters,
        shape.out_height(),
        shape.out_width(),
    ];
    tensor(out, out_dims)
}

/// The gradients of [`conv_forward`] for input, weight and bias (those `wanted`), from the
/// output's gradient `grad`, image by image in parallel.
fn conv_backward(
    input: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    [want_input, want_weight, want_bias]: [bool; 3],
) -> [Option<FlexTensor>; 3] {
    let shape = ConvShape::of(input, weight);
    let (x, w, grads) = (
        contiguous_values(input),
        contiguous_values(weight),
        contiguous_values(grad),
    );
    let (patch, positions, filters) = (shape.patch(), shape.positions(), shape.filters);
    // d columns = weight^T [patch, filters] @ grad [filters, positions], added onto the image.
    let filters_t = Matrix::dense(&w, filters, patch).transposed();
    let mut d_input = want_input.then(|| vec![0.0f32; shape.batch * shape.image_len()]);
    let images: Vec<Option<&mut [f32]>> = match &mut d_input {
        Some(d) => d.chunks_mut(shape.image_len()).map(Some).collect(),
        None => (0..shape.batch).map(|_| None).collect(),
    };
    let sums = || (vec![0.0f32; filters * patch], vec![0.0f32; filters]);
    let threads = rayon::current_num_threads().max(1);
    let (d_weight, d_bias) = images
        .into_par_iter()
        .enumerate()
        .with_min_len(shape.batch.div_ceil(threads))
        .fold(
            || (sums(), vec![0.0f32; patch * positions]),
            |((mut d_weight, mut d_bias), mut columns), (image, d_image)| {
                let g = Matrix::dense(
                    &grads[image * filters * positions..][..filters * positions],
                    filters,
                    positions,
                );
                if want_weight {
                    let pixels = &x[image * shape.image_len()..][..shape.image_len()];
                    image_to_columns(&shape, pixels, &mut columns);
                    // d weight += grad [filters, positions] @ columns^T [positions, patch]
                    // SAFETY: `d_weight` holds `filters * patch` initialised values.
                    unsafe {
                        let columns_t = Matrix::dense(&columns, patch, positions).transposed();
                        gemm_into(d_weight.as_mut_ptr(), g, columns_t, true)
                    };
                }
                if want_bias {
                    for (sum, row) in d_bias.iter_mut().zip(g.data.chunks_exact(positions)) {
                        *sum += row.iter().sum::<f32>();
                    }
                }
                if let Some(d_image) = d_image {
                    // SAFETY: `columns` holds `patch * positions` initialised values.
                    unsafe { gemm_into(columns.as_mut_ptr(), filters_t, g, false) };
                    columns_to_image(&shape, &columns, d_image);
                }
                ((d_weight, d_bias), columns)
            },
        )
        .map(|(sums, _)| sums)
        .reduce(sums, |(mut w, mut b), (w2, b2)| {
            w.iter_mut().zip(w2).for_each(|(a, b)| *a += b);
            b.iter_mut().zip(b2).for_each(|(a, b)| *a += b);
            (w, b)
        });
    let [kh, kw] = shape.kernel;
    let input_dims = vec![shape.batch, shape.channels, shape.height, shape.width];
    [
        d_input.map(|d| tensor(d, input_dims)),
        want_weight.then(|| tensor(d_weight, vec![filters, shape.channels, kh, kw])),
        want_bias.then(|| tensor(d_bias, vec![filters])),
    ]
}

/// Plain SGD's update on flex tensors without autodiff (an optimizer works on the
/// parameters' values, outside the gradient graph).
#[backend_extension(Flex)]
pub trait SgdBackend: Backend {
    /// `param - grad * learning_rate`, in place when `param`'s buffer is its own.
    fn sgd_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        learning_rate: f32,
    ) -> FloatTensor<Self>;
}

impl SgdBackend for Flex {
    fn sgd_update(mut param: FlexTensor, grad: FlexTensor, learning_rate: f32) -> FlexTensor {
        assert_eq!(
            param.layout().shape(),
            grad.layout().shape(),
            "sgd update: the gradient's shape is not the parameter's"
        );
        let grad = contiguous_values(&grad);
        // Burn's `tensor - grad.mul_scalar(lr)`, value for value: the product rounded to f32,
        // then the difference.
        let update = |values: &mut [f32], grads: &[f32]| {
            for (value, grad) in values.iter_mut().zip(grads) {
                *value -= grad * learning_rate;
            }
        };
        let apply = |values: &mut [f32]| {
            const CHUNK: usize = 1 << 15;
            if values.len() <= CHUNK {
                update(values, &grad);
            } else {
                values
                    .par_chunks_mut(CHUNK)
                    .zip(grad.par_chunks(CHUNK))
                    .for_each(|(values, grads)| update(values, grads));
            }
        };
        let whole = param.layout().contiguous_offsets() == Some((0, grad.len()));
        if whole
            && let Some(values) = param.try_storage_mut::<f32>()
            && values.len() == grad.len()
        {
            apply(values);
            return param;
        }
        let mut values = contiguous_values(&param).into_owned();
        apply(&mut values);
        tensor(values, param.layout().shape().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tensor};

    fn shape(channels: usize, height: usize, width: usize, kernel: [usize; 2]) -> ConvShape {
        ConvShape {
            batch: 1,
            channels,
            height,
            width,
            filters: 1,
            kernel,
        }
    }

    #[test]
    fn columns_are_burns_unfolded_patches() {
        let _random = crate::testing::random_numbers();
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 7, 6], Distribution::Default, &device);
        let pixels = x.to_data().as_slice::<f32>().unwrap().to_vec();
        for kernel @ [kh, kw] in [[3, 2], [1, 1], [7, 6]] {
            let shape = shape(2, 7, 6, kernel);
            let mut columns = vec![f32::NAN; shape.patch() * shape.positions()];
            image_to_columns(&shape, &pixels, &mut columns);
            // Burn: [channels, h_out, w_out, kh, kw] -> [channels * kh * kw, h_out * w_out]
            let patches: Tensor<4> = x.clone().unfold::<4, usize>(1, kh, 1);
            let patches: Tensor<5> = patches.unfold::<5, usize>(2, kw, 1);
            let expected = patches
                .permute([0, 3, 4, 1, 2])
                .reshape([shape.patch(), shape.positions()])
                .to_data()
                .as_slice::<f32>()
                .unwrap()
                .to_vec();
            assert_eq!(columns, expected, "{kernel:?}");
        }
    }

    #[test]
    fn adding_columns_back_is_the_transpose_of_taking_them() {
        let _random = crate::testing::random_numbers();
        // <columns(x), c> = <x, image(c)> for every x and c.
        let shape = shape(3, 6, 5, [2, 3]);
        let device = Device::flex();
        let random = |n: usize| -> Vec<f32> {
            let t = Tensor::<1>::random([n], Distribution::Default, &device);
            t.to_data().as_slice::<f32>().unwrap().to_vec()
        };
        let (x, c) = (random(3 * 6 * 5), random(shape.patch() * shape.positions()));
        let mut columns = vec![0.0; c.len()];
        image_to_columns(&shape, &x, &mut columns);
        let mut image = vec![0.0; x.len()];
        columns_to_image(&shape, &c, &mut image);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f32>();
        let (left, right) = (dot(&columns, &c), dot(&x, &image));
        assert!(
            (left - right).abs() <= 1e-4 * left.abs().max(1.0),
            "{left} vs {right}"
        );
    }
}
