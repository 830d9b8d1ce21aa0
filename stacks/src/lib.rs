//! The LinkedIn Ads stack as typed Rust values, built from an environment file.

pub mod catalog;
pub mod env;
#[doc(hidden)]
pub mod fuzz;
pub mod linkedin_ads;
pub mod monitoring;
pub mod synthetic;

pub use env::{Env, EnvError, EnvErrors};
pub use linkedin_ads::{Inputs, STACK_NAME, StackError, linkedin_ads};
