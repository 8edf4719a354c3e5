//! CUDA C to CUBIN through NVRTC, cached on disk: compiling takes seconds, loading a cached CUBIN
//! milliseconds. The cache key covers everything that changes the output: the source, the
//! options (the model's shape is passed as defines), NVRTC's version and the GPU's architecture.

use super::symbols::Nvrtc;
use cudarc::nvrtc::sys::nvrtcProgram;
use std::ffi::{CString, c_char, c_int};
use std::path::{Path, PathBuf};

/// Where CUBINs are kept; default `$XDG_CACHE_HOME/turbine/cuda` or `~/.cache/turbine/cuda`.
pub const CACHE_DIR_ENV: &str = "TURBINE_CUDA_CACHE";

pub struct Compiler {
    nvrtc: &'static Nvrtc,
    version: (i32, i32),
    cache: Option<PathBuf>,
}

impl Compiler {
    /// A compiler through `nvrtc` (see `libs`).
    pub fn new(nvrtc: &'static Nvrtc) -> Result<Self, String> {
        let (mut major, mut minor): (c_int, c_int) = (0, 0);
        // SAFETY: plain out-parameters.
        unsafe { (nvrtc.version)(&mut major, &mut minor) }
            .result()
            .map_err(|e| format!("nvrtcVersion: {e}"))?;
        Ok(Self {
            nvrtc,
            version: (major, minor),
            cache: cache_dir(|k| std::env::var(k).ok()),
        })
    }

    pub fn version(&self) -> (i32, i32) {
        self.version
    }

    /// The CUBIN of `source` for compute capability `arch` (e.g. (9, 0)), from the cache when it
    /// holds one, else compiled (and cached; a cache that cannot be written is skipped).
    pub fn cubin(
        &self,
        source: &str,
        defines: &[(&str, String)],
        arch: (i32, i32),
    ) -> Result<Vec<u8>, String> {
        // sm_90a on Hopper: its own instructions (wgmma in prefill_wgmma.cu), at the price of a
        // CUBIN that runs on compute capability 9.0 only, which is the GPU in hand.
        let suffix = if arch == (9, 0) { "a" } else { "" };
        let mut options = vec![
            format!("--gpu-architecture=sm_{}{}{suffix}", arch.0, arch.1),
            "--std=c++17".to_string(),
            "-default-device".to_string(),
            // Flush denormals: exp2f becomes one MUFU instruction in the softmax loops.
            "--ftz=true".to_string(),
        ];
        options.extend(defines.iter().map(|(k, v)| format!("-D{k}={v}")));
        let key = cache_key(source, &options, self.version);
        let path = self
            .cache
            .as_ref()
            .map(|dir| dir.join(format!("{key}.cubin")));
        if let Some(bytes) = path.as_ref().and_then(|p| std::fs::read(p).ok()) {
            return Ok(bytes);
        }
        let cubin = compile(self.nvrtc, source, &options)?;
        if let Some(path) = path
            && let Err(err) = write_atomically(&path, &cubin)
        {
            tracing::warn!(
                "cannot cache the compiled kernels in {}: {err}",
                path.display()
            );
        }
        Ok(cubin)
    }
}

/// A hex digest of what determines the CUBIN.
pub fn cache_key(source: &str, options: &[String], nvrtc: (i32, i32)) -> String {
    let mut text = format!("nvrtc {}.{}\n", nvrtc.0, nvrtc.1);
    for option in options {
        text.push_str(option);
        text.push('\n');
    }
    text.push_str(source);
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

pub fn cache_dir(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(dir) = env(CACHE_DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    let base = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("turbine").join("cuda"))
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

fn compile(nvrtc: &Nvrtc, source: &str, options: &[String]) -> Result<Vec<u8>, String> {
    let src = CString::new(source).map_err(|e| e.to_string())?;
    let opts: Vec<CString> = options
        .iter()
        .map(|o| CString::new(o.as_str()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
    let mut prog: nvrtcProgram = std::ptr::null_mut();
    // SAFETY: `src`, `opts` outlive the program, which is destroyed before returning.
    unsafe {
        (nvrtc.create_program)(
            &mut prog,
            src.as_ptr(),
            c"kernels.cu".as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        )
        .result()
        .map_err(|e| format!("nvrtcCreateProgram: {e}"))?;
        let compiled = (nvrtc.compile_program)(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr());
        let result = match compiled.result() {
            Ok(()) => cubin_of(nvrtc, prog),
            Err(e) => Err(format!("NVRTC failed ({e}):\n{}", log_of(nvrtc, prog))),
        };
        let _ = (nvrtc.destroy_program)(&mut prog);
        result
    }
}

/// # Safety
/// `prog` is a compiled program.
unsafe fn cubin_of(nvrtc: &Nvrtc, prog: nvrtcProgram) -> Result<Vec<u8>, String> {
    let mut size = 0usize;
    unsafe { (nvrtc.cubin_size)(prog, &mut size) }
        .result()
        .map_err(|e| format!("nvrtcGetCUBINSize: {e}"))?;
    let mut cubin = vec![0u8; size];
    unsafe { (nvrtc.cubin)(prog, cubin.as_mut_ptr().cast()) }
        .result()
        .map_err(|e| format!("nvrtcGetCUBIN: {e}"))?;
    Ok(cubin)
}

/// # Safety
/// `prog` is a program that NVRTC tried to compile.
unsafe fn log_of(nvrtc: &Nvrtc, prog: nvrtcProgram) -> String {
    let mut size = 0usize;
    if unsafe { (nvrtc.program_log_size)(prog, &mut size) }
        .result()
        .is_err()
    {
        return String::new();
    }
    let mut log = vec![0u8; size];
    if unsafe { (nvrtc.program_log)(prog, log.as_mut_ptr().cast()) }
        .result()
        .is_err()
    {
        return String::new();
    }
    String::from_utf8_lossy(&log)
        .trim_end_matches('\0')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::super::gemv::GemvLayout;
    use super::super::kernels::{SOURCE, defines};
    use super::super::libs::{SearchDirs, open_nvrtc};
    use super::super::prefill::PrefillLayout;
    use super::*;

    /// NVRTC of CUDA `major` from `scripts/fixtures.sh nvrtc` (pip wheels: it runs on the CPU),
    /// looked up as the executor does, and a compiler through it that keeps nothing on disk.
    fn compiler(major: i32, lib_dir: &str) -> Compiler {
        let dir = turbine_tokens::model::cache_dir()
            .join(format!("nvrtc/cuda{major}"))
            .join(lib_dir);
        let dirs = SearchDirs {
            chosen: vec![dir.clone()],
            usual: Vec::new(),
        };
        let (nvrtc, file) = open_nvrtc(&dirs, None).unwrap_or_else(|e| {
            panic!("{e}: run scripts/fixtures.sh nvrtc (it installs into {dir:?})")
        });
        assert!(file.starts_with(dir.to_str().unwrap()), "{file}");
        let mut compiler = Compiler::new(Box::leak(Box::new(nvrtc))).expect("nvrtcVersion");
        compiler.cache = None;
        compiler
    }

    /// Every kernel compiles for Hopper (sm_90a) and Ampere (sm_80) at the head shapes of
    /// Llama-3.1-8B / Qwen3-8B (128, group 4), SmolLM2-135M (64, group 3, here with the
    /// timeline's records) and a wide head (256, group 2), through `compiler`, which must be
    /// NVRTC `major`.
    fn every_kernel_compiles(compiler: &Compiler, major: i32) {
        assert_eq!(compiler.version().0, major);
        let shapes = [
            (128, 4, (9, 0), None),
            (64, 3, (9, 0), Some(1024)),
            (256, 2, (9, 0), None),
            (128, 4, (8, 0), None),
        ];
        for (head_dim, group, arch, timeline) in shapes {
            let defines = defines(
                (head_dim, group, 16),
                &PrefillLayout::new(head_dim, group),
                &GemvLayout::default(),
                timeline,
            );
            let cubin = compiler
                .cubin(SOURCE, &defines, arch)
                .unwrap_or_else(|e| panic!("NVRTC {major}, {head_dim}/{group} on {arch:?}: {e}"));
            assert_eq!(&cubin[..4], b"\x7fELF", "a CUBIN is an ELF file");
        }
    }

    // Both versions are loaded in one process, as where a CUDA 12 directory is chosen on a
    // machine with CUDA 13 installed: each compiler must run the NVRTC it was given.
    #[test]
    fn every_kernel_compiles_with_the_oldest_cuda_12_nvrtc() {
        every_kernel_compiles(&compiler(12, "nvidia/cuda_nvrtc/lib"), 12);
    }

    #[test]
    fn every_kernel_compiles_with_the_oldest_cuda_13_nvrtc() {
        every_kernel_compiles(&compiler(13, "nvidia/cu13/lib"), 13);
    }

    #[test]
    fn the_key_changes_with_source_options_and_version() {
        let opts = vec!["-DHEAD_DIM=128".to_string()];
        let key = cache_key("src", &opts, (13, 0));
        assert_eq!(key, cache_key("src", &opts, (13, 0)));
        assert_ne!(key, cache_key("src2", &opts, (13, 0)));
        assert_ne!(
            key,
            cache_key("src", &["-DHEAD_DIM=64".to_string()], (13, 0))
        );
        assert_ne!(key, cache_key("src", &opts, (12, 8)));
    }

    #[test]
    fn the_cache_dir_prefers_the_env_var_then_xdg_then_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            cache_dir(env(&[(CACHE_DIR_ENV, "/c"), ("HOME", "/h")])),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            cache_dir(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])),
            Some(PathBuf::from("/x/turbine/cuda"))
        );
        assert_eq!(
            cache_dir(env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/turbine/cuda"))
        );
        assert_eq!(cache_dir(env(&[])), None);
    }
}
