//! Precision: the configuration (device, policy, floatx, x64), the one resolver that decides
//! every dtype reaching a device, the loss report of a downcast, and the warning registry.

pub mod config;
pub mod report;
pub mod resolver;
pub mod warnings;

pub use config::{Config, Policy, Scope, ScopeGuard, WarnMode};
pub use report::ConversionReport;
pub use resolver::{resolve, Action, Decision, Request, Site};
