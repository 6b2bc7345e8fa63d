//! AMX tiles, and every unsafe line they need: the eight tile registers as one interface,
//! [`Tiles`], done by the CPU's instructions ([`Hardware`], Intel Xeon 4th generation and
//! later) or by scalar Rust ([`Emulated`], any CPU). The blocking and packing in `amx.rs`
//! run on either, so `cargo test` checks them on every machine and the instructions are
//! checked against the emulation where the CPU has them.
//!
//! Every tile here has one shape, palette 1 with 16 rows of 64 bytes: a float32 result tile
//! is 16 x 16 floats, a left (A) tile 16 rows of 16 bf16 pairs (32 values of the inner
//! dimension), a right (B) tile 16 pairs of rows of 16 columns, each u32 holding
//! `(b[2q][j], b[2q+1][j])` ("VNNI" order). `tdpbf16ps c, a, b` adds
//! `a[i][2q] b[2q][j] + a[i][2q+1] b[2q+1][j]` over the 16 pairs to `c[i][j]`.
//!
//! Tile data is a permission Linux grants a process on request (`arch_prctl` with
//! `ARCH_REQ_XCOMP_PERM`); [`granted`] asks once and [`Hardware`] exists only when it was
//! granted on a CPU that reports AMX-TILE and AMX-BF16.
use std::sync::OnceLock;

/// Rows of every tile.
pub const ROWS: usize = 16;
/// 32-bit elements in a tile's row (64 bytes).
pub const COLS: usize = 16;

/// The eight tile registers, configured as 16 rows of 64 bytes each.
///
/// Loads and stores take a slice and the distance in elements between the tile's rows;
/// they panic unless all 16 rows of 16 elements lie in the slice.
pub trait Tiles {
    /// Configures the tiles (before the first use on this thread).
    fn start(&mut self);
    /// Sets tile `t` to zeros.
    fn zero(&mut self, t: usize);
    /// Loads tile `t` with 16 rows of 16 u32 from `src`, rows `stride` apart.
    fn load(&mut self, t: usize, src: &[u32], stride: usize);
    /// Loads float32 tile `t` from `src`, rows `stride` apart.
    fn load_f32(&mut self, t: usize, src: &[f32], stride: usize);
    /// Stores float32 tile `t` into `dst`, rows `stride` apart.
    fn store_f32(&mut self, t: usize, dst: &mut [f32], stride: usize);
    /// `c += a . b` in bf16 pairs with float32 sums. The pairs used: `c` in 0..4, `a` 4 or 5,
    /// `b` 6 or 7.
    fn dot(&mut self, c: usize, a: usize, b: usize);
    /// Releases the tiles (after the last use on this thread).
    fn end(&mut self);
}

/// Panics unless 16 rows of 16 elements, `stride` apart, lie in `len` elements.
fn check(len: usize, stride: usize, t: usize) {
    assert!(t < 8, "tile {t} of 8");
    let need = super::super::gemm::span(ROWS, COLS, stride, 1);
    assert!(
        stride >= COLS && need.is_some_and(|n| n <= len),
        "a tile of {ROWS} rows of {COLS}, {stride} apart, in {len} elements"
    );
}

/// The tiles in memory, each instruction done in scalar Rust. `tdpbf16ps` adds each pair's
/// two products (exact in float32) and then the pair's sum to the result, rounding to
/// nearest after each addition.
pub struct Emulated {
    t: Box<[[u32; ROWS * COLS]; 8]>,
}

impl Default for Emulated {
    fn default() -> Self {
        Self {
            t: Box::new([[0; ROWS * COLS]; 8]),
        }
    }
}

impl Tiles for Emulated {
    fn start(&mut self) {
        self.t.iter_mut().for_each(|t| t.fill(0));
    }

    fn zero(&mut self, t: usize) {
        self.t[t].fill(0);
    }

    fn load(&mut self, t: usize, src: &[u32], stride: usize) {
        check(src.len(), stride, t);
        for r in 0..ROWS {
            self.t[t][r * COLS..][..COLS].copy_from_slice(&src[r * stride..][..COLS]);
        }
    }

    fn load_f32(&mut self, t: usize, src: &[f32], stride: usize) {
        check(src.len(), stride, t);
        for r in 0..ROWS {
            for (d, s) in self.t[t][r * COLS..][..COLS]
                .iter_mut()
                .zip(&src[r * stride..][..COLS])
            {
                *d = s.to_bits();
            }
        }
    }

    fn store_f32(&mut self, t: usize, dst: &mut [f32], stride: usize) {
        check(dst.len(), stride, t);
        for r in 0..ROWS {
            for (d, s) in dst[r * stride..][..COLS]
                .iter_mut()
                .zip(&self.t[t][r * COLS..][..COLS])
            {
                *d = f32::from_bits(*s);
            }
        }
    }

    fn dot(&mut self, c: usize, a: usize, b: usize) {
        assert!(c < 4 && (4..6).contains(&a) && (6..8).contains(&b));
        let lo = |u: u32| f32::from_bits(u << 16);
        let hi = |u: u32| f32::from_bits(u & 0xFFFF_0000);
        let (at, bt) = (self.t[a], self.t[b]);
        let ct = &mut self.t[c];
        for i in 0..ROWS {
            for j in 0..COLS {
                let mut acc = f32::from_bits(ct[i * COLS + j]);
                for q in 0..ROWS {
                    let (x, y) = (at[i * COLS + q], bt[q * COLS + j]);
                    acc += lo(x) * lo(y) + hi(x) * hi(y);
                }
                ct[i * COLS + j] = acc.to_bits();
            }
        }
    }

    fn end(&mut self) {}
}

/// Whether this CPU has AMX-TILE and AMX-BF16 and Linux granted this process tile data
/// (asked once).
pub fn granted() -> bool {
    static GRANTED: OnceLock<bool> = OnceLock::new();
    *GRANTED.get_or_init(request)
}

/// Whether the CPU reports AMX-TILE and AMX-BF16 (CPUID leaf 7: EDX bits 24 and 22).
pub fn cpu_has_amx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid_count;
        if __cpuid_count(0, 0).eax < 7 {
            return false;
        }
        let edx = __cpuid_count(7, 0).edx;
        edx >> 24 & 1 == 1 && edx >> 22 & 1 == 1
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn request() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        /// `arch_prctl` codes (arch/x86/include/uapi/asm/prctl.h) and the tile data state
        /// component (XFEATURE_XTILEDATA).
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        if !cpu_has_amx() {
            return false;
        }
        // SAFETY: arch_prctl with this code only asks the kernel for a permission; it reads
        // and writes no memory of ours.
        let r = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        r == 0
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// The CPU's tile instructions. Made only where [`granted`] holds; tiles are per-thread
/// state, so a value is used on the thread that made it (it is neither Send nor Sync).
#[cfg(target_arch = "x86_64")]
pub struct Hardware {
    _per_thread: std::marker::PhantomData<*const ()>,
}

#[cfg(target_arch = "x86_64")]
impl Hardware {
    /// The tiles, where the CPU has them and this process may use them.
    pub fn new() -> Option<Self> {
        granted().then_some(Self {
            _per_thread: std::marker::PhantomData,
        })
    }
}

#[cfg(target_arch = "x86_64")]
impl Tiles for Hardware {
    fn start(&mut self) {
        // Palette 1; every tile 16 rows of 64 bytes (bytes 16.. hold the u16 row sizes,
        // bytes 48.. the row counts).
        let mut cfg = [0u8; 64];
        cfg[0] = 1;
        for t in 0..8 {
            cfg[16 + 2 * t..][..2].copy_from_slice(&((COLS * 4) as u16).to_le_bytes());
            cfg[48 + t] = ROWS as u8;
        }
        // SAFETY: the tiles are granted (`new`); ldtilecfg reads the 64 bytes of cfg.
        unsafe {
            std::arch::asm!("ldtilecfg [{0}]", in(reg) cfg.as_ptr(), options(nostack, readonly))
        };
    }

    fn zero(&mut self, t: usize) {
        assert!(t < 8, "tile {t} of 8");
        // SAFETY: configured tiles (`start`), no memory touched.
        unsafe { zero_tile(t) }
    }

    fn load(&mut self, t: usize, src: &[u32], stride: usize) {
        check(src.len(), stride, t);
        // SAFETY: the 16 rows of 64 bytes, stride*4 bytes apart, lie in src (checked).
        unsafe { load_tile(t, src.as_ptr().cast(), stride * 4) }
    }

    fn load_f32(&mut self, t: usize, src: &[f32], stride: usize) {
        check(src.len(), stride, t);
        // SAFETY: as `load`.
        unsafe { load_tile(t, src.as_ptr().cast(), stride * 4) }
    }

    fn store_f32(&mut self, t: usize, dst: &mut [f32], stride: usize) {
        check(dst.len(), stride, t);
        // SAFETY: the 16 rows of 64 bytes written lie in dst (checked), borrowed exclusively.
        unsafe { store_tile(t, dst.as_mut_ptr().cast(), stride * 4) }
    }

    fn dot(&mut self, c: usize, a: usize, b: usize) {
        // SAFETY: configured tiles; registers only.
        unsafe {
            match (c, a, b) {
                (0, 4, 6) => std::arch::asm!("tdpbf16ps tmm0, tmm4, tmm6", options(nostack, nomem)),
                (1, 4, 7) => std::arch::asm!("tdpbf16ps tmm1, tmm4, tmm7", options(nostack, nomem)),
                (2, 5, 6) => std::arch::asm!("tdpbf16ps tmm2, tmm5, tmm6", options(nostack, nomem)),
                (3, 5, 7) => std::arch::asm!("tdpbf16ps tmm3, tmm5, tmm7", options(nostack, nomem)),
                _ => panic!("tile product c{c} += a{a} . b{b} is not one of the four pairs used"),
            }
        }
    }

    fn end(&mut self) {
        // SAFETY: returns the tiles to their initial state; registers only.
        unsafe { std::arch::asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// # Safety
/// Tiles configured on this thread; `t` < 8.
#[cfg(target_arch = "x86_64")]
unsafe fn zero_tile(t: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        match t {
            0 => std::arch::asm!("tilezero tmm0", options(nostack, nomem)),
            1 => std::arch::asm!("tilezero tmm1", options(nostack, nomem)),
            2 => std::arch::asm!("tilezero tmm2", options(nostack, nomem)),
            3 => std::arch::asm!("tilezero tmm3", options(nostack, nomem)),
            4 => std::arch::asm!("tilezero tmm4", options(nostack, nomem)),
            5 => std::arch::asm!("tilezero tmm5", options(nostack, nomem)),
            6 => std::arch::asm!("tilezero tmm6", options(nostack, nomem)),
            7 => std::arch::asm!("tilezero tmm7", options(nostack, nomem)),
            _ => unreachable!("checked by the caller"),
        }
    }
}

/// # Safety
/// Tiles configured on this thread; `t` < 8; 16 rows of 64 bytes, `stride` bytes apart from
/// `p`, readable.
#[cfg(target_arch = "x86_64")]
unsafe fn load_tile(t: usize, p: *const u8, stride: usize) {
    macro_rules! ld {
        ($r:literal) => {
            std::arch::asm!(concat!("tileloadd tmm", $r, ", [{p} + {s}*1]"),
                p = in(reg) p, s = in(reg) stride, options(nostack, readonly))
        };
    }
    // SAFETY: the caller's contract.
    unsafe {
        match t {
            0 => ld!("0"),
            1 => ld!("1"),
            2 => ld!("2"),
            3 => ld!("3"),
            4 => ld!("4"),
            5 => ld!("5"),
            6 => ld!("6"),
            7 => ld!("7"),
            _ => unreachable!("checked by the caller"),
        }
    }
}

/// # Safety
/// Tiles configured on this thread; `t` < 8; 16 rows of 64 bytes, `stride` bytes apart from
/// `p`, writable and not accessed by anyone else meanwhile.
#[cfg(target_arch = "x86_64")]
unsafe fn store_tile(t: usize, p: *mut u8, stride: usize) {
    macro_rules! st {
        ($r:literal) => {
            std::arch::asm!(concat!("tilestored [{p} + {s}*1], tmm", $r),
                p = in(reg) p, s = in(reg) stride, options(nostack))
        };
    }
    // SAFETY: the caller's contract.
    unsafe {
        match t {
            0 => st!("0"),
            1 => st!("1"),
            2 => st!("2"),
            3 => st!("3"),
            4 => st!("4"),
            5 => st!("5"),
            6 => st!("6"),
            7 => st!("7"),
            _ => unreachable!("checked by the caller"),
        }
    }
}
