//! Finding and loading the CUDA libraries at run time, by absolute path from the usual places.
//! NVRTC's and cuBLASLt's functions are then looked up in those very files (`symbols`); the
//! driver is opened first so that cudarc's own later `dlopen` of it by name returns the library
//! already loaded. Without this, a missing library is a panic inside cudarc. NVRTC and cuBLASLt
//! of a CUDA major version newer than the driver runs are passed over (their kernels would not
//! load), so a CUDA 12 driver takes CUDA 12 libraries where 13 is also installed; a driver
//! older than CUDA 12.0 is refused before they are looked for.

use super::symbols::{BlasLt, Nvrtc};
use libloading::Library;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Colon-separated directories searched before any other.
pub const LIB_DIR_ENV: &str = "TURBINE_CUDA_LIB_DIR";

/// One library: the file names to try, newest major version first.
struct Wanted {
    what: &'static str,
    names: &'static [&'static str],
}

const DRIVER: Wanted = Wanted {
    what: "the CUDA driver (libcuda)",
    names: &["libcuda.so.1", "libcuda.so"],
};
const NVRTC: Wanted = Wanted {
    what: "NVRTC",
    names: &["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"],
};
const CUBLASLT: Wanted = Wanted {
    what: "cuBLASLt",
    names: &["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"],
};

/// Where to look: the directories the user named (`$TURBINE_CUDA_LIB_DIR`, an explicit choice:
/// the first that holds any version of a library wins, so a CUDA 12 directory named there beats
/// a CUDA 13 found elsewhere), then the usual places (newest major version first across them).
pub struct SearchDirs {
    pub chosen: Vec<PathBuf>,
    pub usual: Vec<PathBuf>,
}

/// `$TURBINE_CUDA_LIB_DIR`'s directories, then the usual ones: the toolkit (`$CUDA_HOME`,
/// `$CUDA_PATH`, `/usr/local/cuda`), the driver's usual homes, then Python environments'
/// `site-packages/nvidia/*/lib` (the pip wheels PyTorch installs).
pub fn search_dirs(env: impl Fn(&str) -> Option<String>) -> SearchDirs {
    let chosen = env(LIB_DIR_ENV)
        .map(|list| {
            list.split(':')
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    SearchDirs {
        chosen,
        usual: usual_dirs(env),
    }
}

fn usual_dirs(env: impl Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let toolkits = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(|k| env(k))
        .map(PathBuf::from)
        .chain([PathBuf::from("/usr/local/cuda")]);
    for root in toolkits {
        dirs.push(root.join("lib64"));
        dirs.push(root.join("targets/x86_64-linux/lib"));
    }
    for d in [
        "/usr/local/nvidia/lib64",
        "/usr/local/nvidia/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/usr/lib/wsl/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    let mut envs: Vec<PathBuf> = ["VIRTUAL_ENV", "CONDA_PREFIX"]
        .iter()
        .filter_map(|k| env(k))
        .map(PathBuf::from)
        .collect();
    envs.extend(["/usr/local", "/usr"].map(PathBuf::from));
    envs.extend(subdirs(Path::new("/opt")).flat_map(|d| [d.join(".venv"), d]));
    if let Some(home) = env("HOME") {
        envs.push(Path::new(&home).join(".local"));
    }
    for prefix in envs {
        for python in subdirs(&prefix.join("lib")).filter(|p| name_starts(p, "python3")) {
            for packages in ["site-packages", "dist-packages"] {
                for lib in subdirs(&python.join(packages).join("nvidia")) {
                    dirs.push(lib.join("lib"));
                }
            }
        }
    }
    dirs
}

fn subdirs(dir: &Path) -> impl Iterator<Item = PathBuf> + use<> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found.into_iter()
}

fn name_starts(path: &Path, prefix: &str) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(prefix))
}

/// The library file to load: in the first chosen directory that holds any of `names` (newest
/// first within it); else the first existing file among `names` × the usual directories, trying
/// every directory for a name before the next (older) name.
pub fn find(names: &[&str], dirs: &SearchDirs) -> Option<PathBuf> {
    let chosen = dirs
        .chosen
        .iter()
        .flat_map(|d| names.iter().map(move |n| d.join(n)));
    let usual = names
        .iter()
        .flat_map(|n| dirs.usual.iter().map(move |d| d.join(n)));
    chosen.chain(usual).find(|p| p.is_file())
}

/// The loaded libraries, kept open for the process's life, and what was loaded (driver, NVRTC,
/// cuBLASLt): a file's path, or a bare name where the dynamic loader's own path found it.
pub struct Loaded {
    pub nvrtc: Nvrtc,
    pub blaslt: BlasLt,
    /// The driver, kept open for cudarc (see the module's documentation).
    _driver: Library,
    pub files: Vec<String>,
    /// The CUDA version the driver runs (`cuDriverGetVersion`, e.g. 12040 for 12.4), if it said.
    pub driver: Option<u32>,
}

/// Loads the driver, NVRTC and cuBLASLt once per process and says which files were loaded;
/// later calls return the first call's outcome. The error names the library and the places
/// searched.
pub fn load() -> Result<&'static Loaded, String> {
    static LOADED: OnceLock<Result<Loaded, String>> = OnceLock::new();
    match LOADED.get_or_init(|| load_all(&search_dirs(|k| std::env::var(k).ok()))) {
        Ok(loaded) => Ok(loaded),
        Err(e) => Err(e.clone()),
    }
}

fn load_all(dirs: &SearchDirs) -> Result<Loaded, String> {
    let (driver_lib, driver_file) = open(&DRIVER, dirs, None)?;
    let driver = driver_version(&driver_lib);
    new_enough(driver)?;
    let (nvrtc, nvrtc_file) = open_nvrtc(dirs, driver)?;
    let (blaslt, blaslt_file) = open(&CUBLASLT, dirs, driver)?;
    Ok(Loaded {
        nvrtc,
        blaslt: BlasLt::load(blaslt, &blaslt_file)?,
        _driver: driver_lib,
        files: vec![driver_file, nvrtc_file, blaslt_file],
        driver,
    })
}

/// NVRTC's functions from the first file of `dirs` whose major version `driver` runs (all where
/// it is not known), and which file that was.
pub fn open_nvrtc(dirs: &SearchDirs, driver: Option<u32>) -> Result<(Nvrtc, String), String> {
    let (lib, file) = open(&NVRTC, dirs, driver)?;
    // NVRTC opens its builtins by name when it compiles: a file found outside the loader's path
    // needs them loaded from its directory beforehand, for the process's life.
    if let Some(builtins) = nvrtc_builtins(Path::new(&file)) {
        std::mem::forget(builtins);
    }
    Ok((Nvrtc::load(lib, &file)?, file))
}

/// The first file of `wanted` in `dirs` whose major version `driver` runs, loaded, else the
/// first of its names the dynamic loader's own path (ld.so.conf, LD_LIBRARY_PATH) has.
fn open(
    wanted: &Wanted,
    dirs: &SearchDirs,
    driver: Option<u32>,
) -> Result<(Library, String), String> {
    let names = runnable(wanted.names, driver);
    if let Some(path) = find(&names, dirs) {
        // SAFETY: loading a vendor library runs its initialisers, as any CUDA program does.
        let lib = unsafe { Library::new(&path) }
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        return Ok((lib, path.display().to_string()));
    }
    let passed_over = match driver {
        Some(v) if names.len() < wanted.names.len() => format!(
            " (newer versions were passed over: the driver runs CUDA {} at most)",
            cuda_version(v)
        ),
        _ => String::new(),
    };
    names
        .iter()
        // SAFETY: as above.
        .find_map(|&n| unsafe { Library::new(n) }.ok().map(|l| (l, n.to_string())))
        .ok_or_else(|| {
            format!(
                "{} not found: no GPU driver or CUDA libraries on this machine? Tried {:?} in \
                 ${LIB_DIR_ENV}, the CUDA toolkit, the driver's directories and Python's \
                 site-packages/nvidia/*/lib{passed_over}",
                wanted.what, names
            )
        })
}

/// The oldest CUDA version the driver may run: kernels are launched with `cuLaunchKernelEx`.
const OLDEST_DRIVER: u32 = 12000;

/// Refuses a driver older than [`OLDEST_DRIVER`] (one that did not say its version may try).
fn new_enough(driver: Option<u32>) -> Result<(), String> {
    match driver {
        Some(v) if v < OLDEST_DRIVER => Err(format!(
            "the GPU driver runs CUDA {}; the CUDA executor needs CUDA 12.0 or later (driver 525 \
             or newer)",
            cuda_version(v)
        )),
        _ => Ok(()),
    }
}

/// `cuDriverGetVersion`'s number as CUDA writes it: 12040 is "12.4".
fn cuda_version(v: u32) -> String {
    format!("{}.{}", v / 1000, v % 1000 / 10)
}

/// `cuDriverGetVersion` (e.g. 12040 for CUDA 12.4), if `driver` answers it.
fn driver_version(driver: &Library) -> Option<u32> {
    type GetVersion = unsafe extern "C" fn(*mut i32) -> i32;
    // SAFETY: the driver API's signature; the call needs no initialisation.
    let version = unsafe {
        let f = driver.get::<GetVersion>(b"cuDriverGetVersion\0").ok()?;
        let mut v = 0;
        (f(&mut v) == 0).then_some(v)?
    };
    u32::try_from(version).ok()
}

/// `names` less the major versions newer than the driver runs (a CUDA 13 NVRTC's kernels and
/// cuBLASLt need a CUDA 13 driver), so a CUDA 12 driver takes the CUDA 12 libraries where both
/// are installed. Unversioned names stay; all stay where the driver's version is not known.
fn runnable<'a>(names: &[&'a str], driver: Option<u32>) -> Vec<&'a str> {
    let major = |name: &str| {
        name.rsplit_once(".so.")
            .and_then(|(_, v)| v.parse::<u32>().ok())
    };
    names
        .iter()
        .copied()
        .filter(|n| match (major(n), driver) {
            (Some(m), Some(v)) => m <= v / 1000,
            _ => true,
        })
        .collect()
}

/// NVRTC opens its `libnvrtc-builtins` by name at the first compile; loading it from NVRTC's own
/// directory first makes that work where the directory is not on the loader's path.
fn nvrtc_builtins(nvrtc: &Path) -> Option<Library> {
    let dir = nvrtc.parent()?;
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| name_starts(p, "libnvrtc-builtins.so"))
        .collect();
    candidates.sort();
    // The longest name is the fully versioned file (`.so.13.0`), the one NVRTC asks for.
    candidates.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    candidates
        .iter()
        .find_map(|p| unsafe { Library::new(p) }.ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_var_comes_first_then_the_toolkit() {
        let env = |k: &str| match k {
            LIB_DIR_ENV => Some("/a::/b".to_string()),
            "CUDA_HOME" => Some("/cuda".to_string()),
            _ => None,
        };
        let dirs = search_dirs(env);
        assert_eq!(dirs.chosen, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(dirs.usual[0], PathBuf::from("/cuda/lib64"));
        let toolkit = dirs
            .usual
            .iter()
            .position(|d| d == Path::new("/usr/local/cuda/lib64"));
        let driver = dirs
            .usual
            .iter()
            .position(|d| d == Path::new("/usr/local/nvidia/lib64"));
        assert!(toolkit < driver);
    }

    #[test]
    fn drivers_older_than_cuda_12_are_refused_clearly() {
        let error = new_enough(Some(11080)).expect_err("CUDA 11.8 refused");
        assert!(
            error.contains("CUDA 11.8") && error.contains("12.0"),
            "{error}"
        );
        assert!(new_enough(Some(12000)).is_ok());
        assert!(new_enough(Some(13000)).is_ok());
        assert!(new_enough(None).is_ok());
    }

    #[test]
    fn libraries_newer_than_the_driver_are_passed_over() {
        let names = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];
        assert_eq!(
            runnable(&names, Some(12040)),
            ["libnvrtc.so.12", "libnvrtc.so"]
        );
        assert_eq!(runnable(&names, Some(13000)), names);
        assert_eq!(runnable(&names, None), names);
        assert_eq!(
            runnable(&["libcuda.so.1", "libcuda.so"], Some(12040)).len(),
            2
        );
        assert!(runnable(&["libx.so.13"], Some(12090)).is_empty());
    }

    #[test]
    fn a_chosen_directory_wins_else_the_newest_major_version() {
        let root = std::env::temp_dir().join(format!("turbine-libs-{}", std::process::id()));
        let (old, new) = (root.join("old"), root.join("new"));
        std::fs::create_dir_all(&old).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(old.join("libx.so.12"), b"").unwrap();
        std::fs::write(new.join("libx.so.13"), b"").unwrap();
        std::fs::write(new.join("libx.so.12"), b"").unwrap();
        let names = ["libx.so.13", "libx.so.12"];
        let usual = |chosen: Vec<PathBuf>| SearchDirs {
            chosen,
            usual: vec![old.clone(), new.clone()],
        };
        // Across the usual places the newer major version wins over an earlier directory.
        assert_eq!(find(&names, &usual(vec![])), Some(new.join("libx.so.13")));
        // A directory the user named wins even with an older version, the newest within it.
        assert_eq!(
            find(&names, &usual(vec![old.clone()])),
            Some(old.join("libx.so.12"))
        );
        assert_eq!(
            find(&names, &usual(vec![root.join("none"), new.clone()])),
            Some(new.join("libx.so.13"))
        );
        assert_eq!(find(&["liby.so"], &usual(vec![old.clone()])), None);
        std::fs::remove_dir_all(root).unwrap();
    }
}
