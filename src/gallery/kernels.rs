//! The inner loop of a 1:N search: one query's dot products with every row of a gallery matrix, in single
//! or half precision, with x86-64 SIMD when the CPU has it (checked at run time) and a portable loop
//! otherwise. The index tests both paths against plain arithmetic.

use crate::distance::dot;

/// `out[i] = q · rows[i]` for each `dim`-wide row. Uses AVX2+FMA when the CPU has them (checked at run
/// time, so the binary still runs on any x86-64), else the portable loop.
pub(super) fn row_dots(q: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for (checked just above).
            unsafe { row_dots_avx2(q, rows, dim, out) };
            return;
        }
    }
    row_dots_portable(q, rows, dim, out)
}

#[inline(always)]
fn row_dots_portable(q: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
    for (o, r) in out.iter_mut().zip(rows.chunks_exact(dim)) {
        *o = dot(q, r);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_dots_avx2(q: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
    // The same code, compiled for AVX2+FMA: the compiler vectorises `dot` eight lanes wide.
    row_dots_portable(q, rows, dim, out)
}

/// `out[i] = q · rows[i]` for half-precision rows. Uses AVX2+FMA+F16C when the CPU has them (checked at run
/// time), else widens each value in software.
pub(super) fn row_dots_f16(q: &[f32], rows: &[u16], dim: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            // SAFETY: the CPU supports the features the function is compiled for (checked just above).
            unsafe { row_dots_f16_avx2(q, rows, dim, out) };
            return;
        }
    }
    for (o, r) in out.iter_mut().zip(rows.chunks_exact(dim)) {
        *o = r.iter().zip(q).map(|(h, x)| half::f16::from_bits(*h).to_f32() * x).sum();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_dots_f16_avx2(q: &[f32], rows: &[u16], dim: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    for (o, r) in out.iter_mut().zip(rows.chunks_exact(dim)) {
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut k = 0;
        // SAFETY (loads): k + 16 <= dim = r.len() = q.len() bounds every 8-lane load below.
        while k + 16 <= dim {
            let h0 = _mm_loadu_si128(r.as_ptr().add(k) as *const __m128i);
            let h1 = _mm_loadu_si128(r.as_ptr().add(k + 8) as *const __m128i);
            a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(h0), _mm256_loadu_ps(q.as_ptr().add(k)), a0);
            a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(h1), _mm256_loadu_ps(q.as_ptr().add(k + 8)), a1);
            k += 16;
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(a0, a1));
        let mut s: f32 = lanes.iter().sum();
        while k < dim {
            s += half::f16::from_bits(r[k]).to_f32() * q[k];
            k += 1;
        }
        *o = s;
    }
}
