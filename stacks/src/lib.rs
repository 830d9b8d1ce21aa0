//! The LinkedIn Ads stack as typed Rust values, built from an environment file.

pub mod catalog;
pub mod env;
pub mod linkedin_ads;
pub mod monitoring;

pub use env::{Env, EnvError, EnvErrors};
pub use linkedin_ads::{Inputs, STACK_NAME, StackError, linkedin_ads};
