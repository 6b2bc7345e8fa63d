//! Every unsafe line of the convolution: matrix products with the `gemm` crate (candle's
//! own) behind interfaces that check their sizes, and the parallel forward whose tiles
//! write disjoint columns of one output.
use gemm::Parallelism;
use rayon::prelude::*;

/// Elements a strided `rows x cols` view spans, `(rows-1)*rs + (cols-1)*cs + 1` (0 when
/// empty), or None when that does not fit in a usize. The guards before unsafe code use
/// this, never plain arithmetic, which wraps in a release build and would pass the check.
pub fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(1)
}

/// A read-only matrix view over a slice: `rows x cols`, element (i, j) at
/// `i * rs + j * cs`. Built only by [`Mat::rm`] and [`Mat::tr`], which check that every
/// element lies inside the slice.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> Mat<'a, T> {
    fn new(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        let last = span(rows, cols, rs, cs);
        assert!(
            last.is_some_and(|l| l <= data.len()),
            "a {rows}x{cols} view (strides {rs}, {cs}) needs {last:?} elements, the slice has {}",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// `s` as a row-major `rows x cols` matrix.
    pub fn rm(s: &'a [T], rows: usize, cols: usize) -> Self {
        Self::new(s, rows, cols, cols, 1)
    }

    /// The transpose (`cols x rows`) of `s` read as a row-major `rows x cols` matrix.
    pub fn tr(s: &'a [T], rows: usize, cols: usize) -> Self {
        Self::new(s, cols, rows, 1, cols)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn row_stride(&self) -> usize {
        self.rs
    }

    pub fn col_stride(&self) -> usize {
        self.cs
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// The slice the view reads.
    pub fn data(&self) -> &'a [T] {
        self.data
    }
}

impl<T: Copy> Mat<'_, T> {
    /// Element (i, j); panics outside the matrix.
    pub fn at(&self, i: usize, j: usize) -> T {
        assert!(
            i < self.rows && j < self.cols,
            "({i}, {j}) outside {}x{}",
            self.rows,
            self.cols
        );
        self.data[i * self.rs + j * self.cs]
    }
}

/// The one call into `gemm`: `dst (a.rows x b.cols, rows dst_rs apart) (+)= a . b`.
///
/// # Safety
/// `dst` must be valid for writes of `a.rows` rows of `b.cols` elements, `dst_rs` apart,
/// and no one else may read or write those elements during the call. (`a` and `b` are
/// checked views.)
unsafe fn gemm_into<T: candle_core::WithDType>(
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    par: Parallelism,
) {
    // SAFETY: the caller vouches for dst; a and b's elements lie in their slices.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        )
    }
}

/// `dst (m x n, row-major) (+)= a (m x k) . b (k x n)`; panics when the shapes disagree.
pub fn matmul<T: candle_core::WithDType>(
    dst: &mut [T],
    accumulate: bool,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    par: Parallelism,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions {k} and {}", b.rows);
    assert!(
        span(m, n, n, 1).is_some_and(|need| dst.len() >= need),
        "{} elements for a {m}x{n} result",
        dst.len()
    );
    // SAFETY: dst holds m*n elements written row-major (checked), borrowed exclusively.
    unsafe { gemm_into(dst.as_mut_ptr(), n, accumulate, a, b, par) }
}

/// A pointer to one output buffer that tiles on several threads write through, each to
/// its own columns ([`tiled_products`] makes sure of that).
#[derive(Clone, Copy)]
struct SharedOut<T: Send>(*mut T);
// SAFETY: the pointer is only used by `tiled_products`, whose work items write disjoint
// elements of a buffer it borrows exclusively for the whole parallel loop.
unsafe impl<T: Send> Send for SharedOut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T: Send> SharedOut<T> {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    fn ptr(&self) -> *mut T {
        self.0
    }
}

/// Products over tiles of output columns, in parallel: `y` holds `images` row-major
/// matrices of `a.rows x p`, one after another; for each image `i` and tile of columns
/// `t0..t0 + n` (tiles of `tile` columns), `fill(i, t0, n, col)` writes the right operand
/// (`a.cols x n`, row-major) into `col`, and `y_i[:, t0..t0 + n] = a . col`.
pub fn tiled_products<T, F>(
    y: &mut [T],
    images: usize,
    p: usize,
    tile: usize,
    a: Mat<'_, T>,
    fill: F,
) where
    T: candle_core::WithDType,
    F: Fn(usize, usize, usize, &mut Vec<T>) + Sync,
{
    let (rows, kk) = (a.rows, a.cols);
    assert!(
        tile > 0
            && images
                .checked_mul(rows)
                .and_then(|r| r.checked_mul(p))
                .is_some_and(|need| y.len() == need),
        "output of {} elements",
        y.len()
    );
    let tiles = p.div_ceil(tile);
    let work: Vec<(usize, usize)> = (0..images)
        .flat_map(|i| (0..tiles).map(move |t| (i, t * tile)))
        .collect();
    // Fewer tiles than threads (batch 1 deep in the network): GEMM's own threads.
    let threads = rayon::current_num_threads();
    let par = if work.len() < threads {
        Parallelism::Rayon(threads.div_ceil(work.len().max(1)))
    } else {
        Parallelism::None
    };
    let out = SharedOut(y.as_mut_ptr());
    work.par_iter().for_each_init(Vec::new, |col, &(i, t0)| {
        let n = tile.min(p - t0);
        fill(i, t0, n, col);
        assert_eq!(col.len(), kk * n, "the tile's operand");
        let b = Mat::rm(col, kk, n);
        // SAFETY: image i's output is rows x p elements at offset i*rows*p of y, inside y
        // (length checked above); this item writes only columns t0..t0+n (t0 + n <= p) of
        // those rows, with row stride p. No two items share an (image, tile), so no element
        // is written twice, and y is borrowed exclusively until the loop ends. a and b are
        // checked views.
        unsafe { gemm_into(out.ptr().add(i * rows * p + t0), p, false, a, b, par) }
    });
}

#[cfg(test)]
mod overflow_tests {
    use super::*;

    #[test]
    fn guards_refuse_shapes_whose_size_overflows() {
        assert_eq!(span(0, 5, 1, 1), Some(0));
        assert_eq!(span(3, 4, 4, 1), Some(12));
        assert_eq!(span(usize::MAX, 2, 2, 1), None);
        assert_eq!(span(2, 2, usize::MAX, 1), None);
        assert_eq!(span(2, usize::MAX, 1, 2), None);
        // (rows-1)*rs + (cols-1)*cs + 1 wraps to a small number in a release build: a
        // view that plain arithmetic would let through over 8 elements.
        let rows = 1usize << (usize::BITS - 1);
        assert_eq!(
            (rows - 1).wrapping_mul(2).wrapping_add(1).wrapping_add(1),
            0
        );
        let data = [0.0f32; 8];
        assert!(std::panic::catch_unwind(|| Mat::new(&data, rows, 1, 2, 1)).is_err());
        let big = 1usize << (usize::BITS / 2);
        let a = Mat::rm(&data[..0], big, 0);
        let b = Mat::rm(&data[..0], 0, big);
        let mut dst = [0.0f32; 8];
        // m*n = 2^64 wraps to 0 and `dst.len() >= 0` would pass.
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            matmul(&mut dst, false, a, b, Parallelism::None)
        }))
        .is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        (0..m * n)
            .map(|ij| (0..k).map(|l| a[ij / n * k + l] * b[l * n + ij % n]).sum())
            .collect()
    }

    #[test]
    fn products_with_transposes_match_the_definition() {
        let (m, k, n) = (3, 4, 5);
        let a: Vec<f64> = (0..m * k).map(|v| v as f64 * 0.5 - 2.0).collect();
        let b: Vec<f64> = (0..k * n).map(|v| (v % 7) as f64 - 3.0).collect();
        let want = naive(&a, &b, m, k, n);
        let mut y = vec![0.0; m * n];
        matmul(
            &mut y,
            false,
            Mat::rm(&a, m, k),
            Mat::rm(&b, k, n),
            Parallelism::None,
        );
        assert_eq!(y, want);
        // a^T stored (k x m), read transposed, gives a again.
        let at: Vec<f64> = (0..k * m).map(|ij| a[(ij % m) * k + ij / m]).collect();
        let mut y2 = vec![1.0; m * n];
        matmul(
            &mut y2,
            true,
            Mat::tr(&at, k, m),
            Mat::rm(&b, k, n),
            Parallelism::None,
        );
        assert!(y2
            .iter()
            .zip(&want)
            .all(|(x, w)| (x - (w + 1.0)).abs() < 1e-12));
    }

    #[test]
    #[should_panic(expected = "needs")]
    fn a_view_past_its_slice_is_refused() {
        let s = [0.0f32; 5];
        let _ = Mat::rm(&s, 2, 3);
    }

    #[test]
    fn tiles_fill_every_column_once() {
        let (images, rows, kk, p, tile) = (2, 3, 4, 7, 3);
        let a: Vec<f64> = (0..rows * kk).map(|v| v as f64).collect();
        let mut y = vec![f64::NAN; images * rows * p];
        // The operand of column t of image i is (i, t, 1, 0)... so y[i][r][t] = a[r] . that.
        tiled_products(
            &mut y,
            images,
            p,
            tile,
            Mat::rm(&a, rows, kk),
            |i, t0, n, col| {
                col.clear();
                for l in 0..kk {
                    col.extend((t0..t0 + n).map(|t| (i * 100 + t * 10 + l) as f64));
                }
            },
        );
        for i in 0..images {
            for r in 0..rows {
                for t in 0..p {
                    let want: f64 = (0..kk)
                        .map(|l| a[r * kk + l] * (i * 100 + t * 10 + l) as f64)
                        .sum();
                    assert_eq!(y[(i * rows + r) * p + t], want, "image {i} row {r} col {t}");
                }
            }
        }
    }
}
