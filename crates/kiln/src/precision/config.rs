//! Configuration: which device, which precision policy, `floatx`, x64 mode, warning mode.
//!
//! # Precedence (highest first)
//! 1. the innermost [`Scope`] entered on this thread (`Scope::new().device(..).enter()`);
//! 2. values set in code with [`set_global`];
//! 3. environment variables `KILN_DEVICE`, `KILN_PRECISION`, `KILN_FLOATX`, `KILN_X64`,
//!    `KILN_WARNINGS`;
//! 4. the config file: `$KILN_CONFIG` if set, else `$KILN_HOME/kiln.json`, else
//!    `~/.kiln/kiln.json` (keys `device`, `precision`, `floatx`, `x64`, `warnings`);
//! 5. defaults: `cpu`, `downcast`, `float32`, x64 off, warnings once.
//!
//! Environment and file are read once, on first use; a malformed value is an error
//! returned from the first call that needs the configuration, never a silent default.

use crate::backend::BackendKind;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// What happens when a dtype is not supported by the device it is headed for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Anything unsupported, implicit or explicit, is an error (for CI).
    Error,
    /// The default: an implicit dtype becomes the nearest supported one of the same kind,
    /// with one warning per cause and a loss report; an explicit request is honoured or
    /// refused, never changed.
    Downcast,
    /// Keep the dtype and place the tensor on the CPU engine; counted and warned once per
    /// cause.
    CpuFallback,
}

impl Policy {
    /// Parses `error`, `downcast`, `cpu-fallback`.
    pub fn parse(s: &str) -> Result<Policy> {
        match s.trim() {
            "error" => Ok(Policy::Error),
            "downcast" => Ok(Policy::Downcast),
            "cpu-fallback" | "cpu_fallback" => Ok(Policy::CpuFallback),
            other => Err(KilnError::Config {
                source_name: "precision policy".into(),
                message: format!("{other:?} is not a policy; use error, downcast or cpu-fallback"),
            }),
        }
    }
    /// The name as parsed.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Error => "error",
            Policy::Downcast => "downcast",
            Policy::CpuFallback => "cpu-fallback",
        }
    }
}

/// How often a warning with the same cause is logged.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarnMode {
    /// Once per distinct cause per process (the default).
    Once,
    /// Every time.
    Always,
    /// Never logged (still counted and capturable).
    Off,
}

impl WarnMode {
    fn parse(s: &str) -> Result<WarnMode> {
        match s.trim() {
            "once" => Ok(WarnMode::Once),
            "always" => Ok(WarnMode::Always),
            "off" | "none" => Ok(WarnMode::Off),
            other => Err(KilnError::Config {
                source_name: "warnings".into(),
                message: format!("{other:?} is not a warning mode; use once, always or off"),
            }),
        }
    }
}

/// The effective configuration.
#[derive(Copy, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Default device for new tensors.
    pub device: Device,
    /// What happens to unsupported dtypes.
    pub policy: Policy,
    /// The default float dtype (Keras `floatx`).
    pub floatx: DType,
    /// x64 mode: off (Keras default) narrows implicit 64-bit dtypes to 32-bit.
    pub x64: bool,
    /// Warning repetition.
    pub warnings: WarnMode,
    /// The engine for new tensors; `None` picks the faster engine for each device.
    pub backend: Option<BackendKind>,
    /// Strict mode for CI: any CPU fallback is an error, even under `cpu-fallback`.
    pub strict_fallback: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            device: Device::Cpu,
            policy: Policy::Downcast,
            floatx: DType::Float32,
            x64: false,
            warnings: WarnMode::Once,
            backend: None,
            strict_fallback: false,
        }
    }
}

impl Config {
    /// The configuration an op on operands of these dtypes, held on these devices and
    /// engines, runs under.
    ///
    /// x64-off mode narrows 64-bit dtypes *entering* kiln: host data, creation defaults and
    /// results that promotion widens beyond 32-bit operands (`int32 + uint32`). A value that is
    /// already 64-bit inside kiln was kept on purpose (requested explicitly, or made with x64
    /// on), so an op on it follows x64 semantics (JAX's `jax_enable_x64`) rather than narrowing
    /// its result without a word: an int64 sum does not wrap in int32, `float64 + 1.0` stays
    /// float64. Transfers keep dtypes for the same reason ([`super::Site::Transfer`]).
    ///
    /// A 64-bit dtype that stands in for a 32-bit one its device lacks (int64 for int32 on
    /// CUDA) is no such choice, and does not switch x64 on: the same program gives the same
    /// dtypes on the cpu and on the GPU.
    ///
    /// ```
    /// use kiln::backend::BackendKind::{Candle, Ndarray};
    /// use kiln::{Config, DType, Device};
    /// let off = Config::default();
    /// let on_cpu = |d| (d, Device::Cpu, Ndarray);
    /// assert!(!off.for_operands(&[on_cpu(DType::Float32), on_cpu(DType::Int32)]).x64);
    /// assert!(off.for_operands(&[on_cpu(DType::Float32), on_cpu(DType::Int64)]).x64);
    /// assert!(!off.for_operands(&[(DType::Int64, Device::Cuda(0), Candle)]).x64);
    /// ```
    pub fn for_operands(&self, operands: &[(DType, Device, BackendKind)]) -> Config {
        let deliberate = |&(d, device, engine): &(DType, Device, BackendKind)| {
            d.is_64bit()
                && crate::device::Capabilities::of_engine(device, engine).supports(d.to_32bit())
        };
        let mut c = *self;
        c.x64 |= operands.iter().any(deliberate);
        c
    }
}

/// Partial settings: what a scope, the environment or a file sets.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overrides {
    device: Option<String>,
    precision: Option<String>,
    floatx: Option<String>,
    x64: Option<bool>,
    warnings: Option<String>,
    backend: Option<String>,
    strict_fallback: Option<bool>,
}

fn parse_floatx(s: &str, src: &str) -> Result<DType> {
    let d = DType::parse(s.trim()).map_err(|_| KilnError::Config {
        source_name: src.into(),
        message: format!("floatx {s:?} is not a dtype name"),
    })?;
    if !d.is_float() {
        return Err(KilnError::Config {
            source_name: src.into(),
            message: format!("floatx must be bfloat16, float16, float32 or float64, not {d}"),
        });
    }
    Ok(d)
}

fn parse_bool(s: &str, src: &str) -> Result<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" | "" => Ok(false),
        other => Err(KilnError::Config {
            source_name: src.into(),
            message: format!("{other:?} is not a boolean; use 1/0, true/false or on/off"),
        }),
    }
}

impl Overrides {
    fn apply(&self, mut c: Config, src: &str) -> Result<Config> {
        let wrap = |e: KilnError| KilnError::Config {
            source_name: src.into(),
            message: e.to_string(),
        };
        if let Some(d) = &self.device {
            c.device = Device::parse(d).map_err(wrap)?;
        }
        if let Some(p) = &self.precision {
            c.policy = Policy::parse(p).map_err(wrap)?;
        }
        if let Some(f) = &self.floatx {
            c.floatx = parse_floatx(f, src)?;
        }
        if let Some(x) = self.x64 {
            c.x64 = x;
        }
        if let Some(w) = &self.warnings {
            c.warnings = WarnMode::parse(w).map_err(wrap)?;
        }
        if let Some(b) = &self.backend {
            c.backend = match b.trim() {
                "auto" | "" => None,
                other => Some(BackendKind::parse(other).map_err(wrap)?),
            };
        }
        if let Some(s) = self.strict_fallback {
            c.strict_fallback = s;
        }
        Ok(c)
    }
}

/// Where the config file is looked for.
pub fn config_file_path() -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("KILN_CONFIG") {
        return Some(p.into());
    }
    if let Ok(h) = std::env::var("KILN_HOME") {
        return Some(std::path::Path::new(&h).join("kiln.json"));
    }
    std::env::var("HOME")
        .ok()
        .map(|h| std::path::Path::new(&h).join(".kiln").join("kiln.json"))
}

/// Builds the configuration from defaults, the config file and the environment, without
/// touching the global state. Used at first use, and by tests of the precedence rules.
pub fn from_environment() -> Result<Config> {
    let mut c = Config::default();
    if let Some(path) = config_file_path() {
        if path.exists() {
            let src = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| KilnError::Config {
                source_name: src.clone(),
                message: e.to_string(),
            })?;
            let o: Overrides = serde_json::from_str(&text).map_err(|e| KilnError::Config {
                source_name: src.clone(),
                message: format!("{e}; expected a JSON object with keys device, precision, floatx, x64, warnings"),
            })?;
            c = o.apply(c, &src)?;
        }
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let env = Overrides {
        device: var("KILN_DEVICE"),
        precision: var("KILN_PRECISION"),
        floatx: var("KILN_FLOATX"),
        warnings: var("KILN_WARNINGS"),
        x64: var("KILN_X64")
            .map(|x| parse_bool(&x, "KILN_X64"))
            .transpose()?,
        backend: var("KILN_BACKEND"),
        strict_fallback: var("KILN_STRICT_FALLBACK")
            .map(|x| parse_bool(&x, "KILN_STRICT_FALLBACK"))
            .transpose()?,
    };
    env.apply(c, "environment")
}

static GLOBAL: RwLock<Option<Config>> = RwLock::new(None);

/// Bumped by every [`set_global`]: a thread's cached [`current`] is valid while it matches.
static GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SCOPES: RefCell<Vec<ScopeSettings>> = const { RefCell::new(Vec::new()) };
    /// This thread's last [`current`] and the generation it was computed under (`None`
    /// after a scope was entered or left). Every op asks for the configuration; this makes
    /// that one atomic load instead of a lock round trip and a walk over the scopes.
    static CURRENT: Cell<Option<(u64, Config)>> = const { Cell::new(None) };
}

#[derive(Copy, Clone, Debug, Default)]
struct ScopeSettings {
    device: Option<Device>,
    policy: Option<Policy>,
    floatx: Option<DType>,
    x64: Option<bool>,
    warnings: Option<WarnMode>,
    backend: Option<Option<BackendKind>>,
    strict_fallback: Option<bool>,
}

/// The global configuration (code settings over environment over file over defaults).
pub fn global() -> Result<Config> {
    if let Some(c) = *GLOBAL.read().unwrap_or_else(|e| e.into_inner()) {
        return Ok(c);
    }
    let c = from_environment()?;
    let mut g = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    Ok(*g.get_or_insert(c))
}

/// Replaces the global configuration (overrides environment and file).
pub fn set_global(c: Config) {
    *GLOBAL.write().unwrap_or_else(|e| e.into_inner()) = Some(c);
    GENERATION.fetch_add(1, Ordering::Release);
}

/// The configuration in force on this thread: the global one with every entered scope
/// applied, innermost last.
pub fn current() -> Result<Config> {
    let generation = GENERATION.load(Ordering::Acquire);
    if let Some((g, c)) = CURRENT.get() {
        if g == generation {
            return Ok(c);
        }
    }
    let c = current_uncached()?;
    CURRENT.set(Some((generation, c)));
    Ok(c)
}

fn current_uncached() -> Result<Config> {
    let mut c = global()?;
    SCOPES.with(|s| {
        for o in s.borrow().iter() {
            c.device = o.device.unwrap_or(c.device);
            c.policy = o.policy.unwrap_or(c.policy);
            c.floatx = o.floatx.unwrap_or(c.floatx);
            c.x64 = o.x64.unwrap_or(c.x64);
            c.warnings = o.warnings.unwrap_or(c.warnings);
            c.backend = o.backend.unwrap_or(c.backend);
            c.strict_fallback = o.strict_fallback.unwrap_or(c.strict_fallback);
        }
    });
    Ok(c)
}

/// A scoped override, like Keras's `device_scope`. Build it, then [`Scope::enter`]; the
/// settings hold on this thread until the returned guard is dropped.
///
/// ```
/// use kiln::precision::{Scope, Policy};
/// use kiln::Device;
/// {
///     let _g = Scope::new().device(Device::parse("sim:mps").unwrap()).policy(Policy::Error).enter();
///     assert_eq!(kiln::precision::config::current().unwrap().policy, Policy::Error);
/// }
/// assert_ne!(kiln::precision::config::current().unwrap().device.to_string(), "sim:mps");
/// ```
#[derive(Copy, Clone, Debug, Default)]
#[must_use = "a scope does nothing until entered"]
pub struct Scope(ScopeSettings);

impl Scope {
    /// An empty scope.
    pub fn new() -> Scope {
        Scope::default()
    }
    /// Sets the device.
    pub fn device(mut self, d: Device) -> Scope {
        self.0.device = Some(d);
        self
    }
    /// Sets the policy.
    pub fn policy(mut self, p: Policy) -> Scope {
        self.0.policy = Some(p);
        self
    }
    /// Sets floatx (must be a float dtype).
    pub fn floatx(mut self, f: DType) -> Scope {
        self.0.floatx = Some(f);
        self
    }
    /// Sets x64 mode.
    pub fn x64(mut self, on: bool) -> Scope {
        self.0.x64 = Some(on);
        self
    }
    /// Sets the warning mode.
    pub fn warnings(mut self, w: WarnMode) -> Scope {
        self.0.warnings = Some(w);
        self
    }
    /// Sets the engine for new tensors (`None`: the automatic choice per device).
    pub fn backend(mut self, b: Option<BackendKind>) -> Scope {
        self.0.backend = Some(b);
        self
    }
    /// Sets strict mode (any CPU fallback is an error).
    pub fn strict_fallback(mut self, on: bool) -> Scope {
        self.0.strict_fallback = Some(on);
        self
    }
    /// Enters the scope on this thread.
    pub fn enter(self) -> ScopeGuard {
        SCOPES.with(|s| s.borrow_mut().push(self.0));
        CURRENT.set(None);
        ScopeGuard { _private: () }
    }
}

/// Leaves its scope when dropped.
#[derive(Debug)]
pub struct ScopeGuard {
    _private: (),
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        SCOPES.with(|s| {
            s.borrow_mut().pop();
        });
        CURRENT.set(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_reject_bad_values() {
        let o = Overrides {
            precision: Some("sometimes".into()),
            ..Default::default()
        };
        assert!(o.apply(Config::default(), "test").is_err());
        let o = Overrides {
            floatx: Some("int32".into()),
            ..Default::default()
        };
        assert!(o.apply(Config::default(), "test").is_err());
        assert!(parse_bool("maybe", "KILN_X64").is_err());
        assert!(parse_bool("1", "KILN_X64").unwrap());
    }

    #[test]
    fn file_overrides_parse_and_unknown_keys_fail() {
        let o: Overrides = serde_json::from_str(r#"{"device":"sim:tpu","x64":true}"#).unwrap();
        let c = o.apply(Config::default(), "f").unwrap();
        assert_eq!(c.device.to_string(), "sim:tpu");
        assert!(c.x64);
        assert!(serde_json::from_str::<Overrides>(r#"{"devise":"cpu"}"#).is_err());
    }

    #[test]
    fn scopes_nest_and_unwind() {
        let base = current().unwrap();
        {
            let _a = Scope::new().policy(Policy::Error).enter();
            {
                let _b = Scope::new().policy(Policy::CpuFallback).x64(true).enter();
                let c = current().unwrap();
                assert_eq!(c.policy, Policy::CpuFallback);
                assert!(c.x64);
            }
            assert_eq!(current().unwrap().policy, Policy::Error);
            assert_eq!(current().unwrap().x64, base.x64);
        }
        assert_eq!(current().unwrap(), base);
    }
}
