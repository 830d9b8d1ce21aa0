//! Command-line arguments and dispatch. Exit codes follow Terraform: 0 success or no
//! changes, 1 error, 2 changes present (`plan --detailed-exitcode`) or drift found (`drift`).

mod apply;
mod cloudformation;
mod context;
mod drift;
mod models;
mod plan;
mod secret;
mod state;
mod synth;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use apply::apply_plan;
pub use context::{Context, Packaging, Paths, plan_stack};

#[derive(Debug, Parser)]
#[command(
    name = "infra",
    version,
    about = "Plan, apply, drift-check and destroy the LinkedIn Ads stack on AWS"
)]
pub struct Cli {
    /// Folder of environment files (<env>.toml). Default: stacks/envs under the current
    /// directory or the nearest parent that has one.
    #[arg(long, global = true, env = "INFRA_ENVS_DIR")]
    pub envs_dir: Option<PathBuf>,

    /// The workspace whose runtime/ crate holds the Lambda handlers. Default: the one the
    /// env folder is in.
    #[arg(long, global = true, env = "INFRA_WORKSPACE")]
    pub workspace: Option<PathBuf>,

    /// Print how many AWS calls the command made, per service and operation (to stderr).
    #[arg(long, global = true)]
    pub stats: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change, without changing anything.
    Plan(PlanArgs),
    /// Apply the stack (or a saved plan) to an environment.
    Apply(ApplyArgs),
    /// Compare every managed resource with the stack; exit 2 on drift.
    Drift(DriftArgs),
    /// Delete every resource of an environment, dependents first.
    Destroy(DestroyArgs),
    /// Set a secret's value (read from stdin), or list which secrets have one.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Write each env's desired state to plans/<env>.json (or check that it is up to date).
    Synth(SynthArgs),
    /// Draw the stack's dependency graph (each resource points at what it depends on).
    Graph {
        #[command(flatten)]
        env: EnvArg,
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
    /// List, register, promote or roll back versions of a model in the stack's registry.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Inspect the state, or release a lock.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
}

#[derive(Debug, Clone, Args)]
pub struct EnvArg {
    /// The environment: stacks/envs/<ENV>.toml.
    #[arg(long = "env", short = 'e')]
    pub name: String,
    /// An independent copy of the environment (e.g. pr-123): names, tags and state carry it,
    /// so several coexist.
    #[arg(long)]
    pub instance: Option<String>,
}

/// Which engine plans and applies (default: the env file's `engine`, else `native`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// The engine's own plan and apply against the AWS APIs, its state in S3.
    Native,
    /// One CloudFormation stack per env, applied by AWS through change sets.
    Cloudformation,
}

/// The engine a command runs with: `--engine`, else the env file's `engine` key.
pub fn engine_of(given: Option<EngineArg>, env: &stacks::Env) -> EngineArg {
    given.unwrap_or(match env.engine {
        stacks::env::Engine::Native => EngineArg::Native,
        stacks::env::Engine::Cloudformation => EngineArg::Cloudformation,
    })
}

/// A CloudFormation change set's name: a letter, then letters, digits and hyphens, at most
/// 128 characters (checked before any call).
fn parse_change_set_name(text: &str) -> Result<String, String> {
    let valid = text.len() <= 128
        && text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "`{text}` is not a change set name: a letter, then letters, digits and hyphens (at most 128)"
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// GitHub-flavoured markdown, for a pull-request comment.
    Markdown,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// One environment (default: every env file).
    #[arg(long = "env", short = 'e')]
    pub env: Option<String>,
    /// Write nothing; exit 2 naming each file that is out of date.
    #[arg(long)]
    pub check: bool,
    /// Where the files go (default: plans/ in the workspace).
    #[arg(long, value_name = "DIR")]
    pub plans_dir: Option<PathBuf>,
    /// What to write: the desired state (`plans/<env>.json`), or a CloudFormation template
    /// of the env (packages the Lambda handlers, whose code keys are their hashes).
    #[arg(long, value_enum, default_value_t = SynthFormat::Desired)]
    pub format: SynthFormat,
    /// Where the template goes (`--format cloudformation` of one env; default: stdout).
    #[arg(long, value_name = "FILE", requires = "env")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SynthFormat {
    /// Each env's desired state, as committed under plans/.
    Desired,
    /// A CloudFormation template (JSON) of one env.
    Cloudformation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

/// Extra renderings written to files in the same run, so CI does not plan twice.
#[derive(Debug, Clone, Default, Args)]
pub struct Outputs {
    /// Also write the text rendering to FILE.
    #[arg(long, value_name = "FILE")]
    pub out_text: Option<PathBuf>,
    /// Also write the JSON rendering to FILE.
    #[arg(long, value_name = "FILE")]
    pub out_json: Option<PathBuf>,
    /// Also write the markdown rendering to FILE.
    #[arg(long, value_name = "FILE")]
    pub out_markdown: Option<PathBuf>,
}

impl Outputs {
    /// Prints the `format` rendering and writes each requested file; `render` gives the
    /// rendering of a format.
    pub fn emit(
        &self,
        format: Format,
        render: impl Fn(Format) -> anyhow::Result<String>,
    ) -> anyhow::Result<()> {
        print!("{}", render(format)?);
        for (path, format) in [
            (&self.out_text, Format::Text),
            (&self.out_json, Format::Json),
            (&self.out_markdown, Format::Markdown),
        ] {
            if let Some(path) = path {
                std::fs::write(path, render(format)?)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub env: EnvArg,
    /// Save the plan to FILE; `infra apply FILE` applies exactly it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub outputs: Outputs,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Allow the plan to delete or replace protected resources.
    #[arg(long)]
    pub allow_protected: bool,
    /// Allow an `[[import]]` to replace the live resource where the stack differs from it in
    /// a property AWS cannot change in place (deleting it and what it holds).
    #[arg(long)]
    pub replace_imported: bool,
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
    /// Keep the change set under NAME (`--engine cloudformation`); `infra apply
    /// --change-set NAME` executes exactly it.
    #[arg(long, value_name = "NAME", value_parser = parse_change_set_name)]
    pub change_set: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub env: EnvArg,
    /// A plan saved with `infra plan --out`; without it, apply plans first.
    pub plan_file: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// At most this many changes in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallelism: u16,
    /// Wait this long for another run's state lock (e.g. 30s, 2m). Default: fail at once.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// Allow deleting or replacing protected resources.
    #[arg(long)]
    pub allow_protected: bool,
    /// Allow an `[[import]]` to replace the live resource where the stack differs from it in
    /// a property AWS cannot change in place (deleting it and what it holds).
    #[arg(long)]
    pub replace_imported: bool,
    /// Print the plan one line per change (no fields) and one line per finished change.
    #[arg(long)]
    pub compact: bool,
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
    /// Execute the change set saved by `infra plan --change-set NAME` (`--engine
    /// cloudformation`).
    #[arg(long, value_name = "NAME", value_parser = parse_change_set_name)]
    pub change_set: Option<String>,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    #[command(flatten)]
    pub env: EnvArg,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub outputs: Outputs,
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub env: EnvArg,
    /// Empty buckets first: every object version and delete marker.
    #[arg(long)]
    pub purge_data: bool,
    #[arg(long)]
    pub auto_approve: bool,
    /// Required to destroy a protected environment or protected resources.
    #[arg(long)]
    pub allow_protected: bool,
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallelism: u16,
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// Print the plan one line per change and one line per finished change.
    #[arg(long)]
    pub compact: bool,
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Write a new current value of secret NAME, read from stdin (checked first, never shown).
    Set {
        #[command(flatten)]
        env: EnvArg,
        /// The secret's name in the stack, e.g. linkedin-oauth.
        #[arg(value_name = "NAME")]
        secret: String,
    },
    /// List the stack's secrets: whether each has a value, and its rotation.
    List {
        #[command(flatten)]
        env: EnvArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the registry's models, or one model's versions and which is promoted.
    List {
        #[command(flatten)]
        env: EnvArg,
        #[arg(long = "model", short = 'm')]
        model: Option<String>,
    },
    /// Register FILE (model.json or model.tar.gz) as the model's next version.
    Register {
        #[command(flatten)]
        env: EnvArg,
        /// The model's name, e.g. creative-scorer.
        #[arg(long, short = 'm')]
        model: String,
        /// The artifact; its file name must be model.json or model.tar.gz.
        #[arg(long)]
        artifact: PathBuf,
        /// JSON with training_data, metrics, hyperparameters and source_revision.
        #[arg(long)]
        metadata: Option<PathBuf>,
        /// Promote the new version at once.
        #[arg(long)]
        promote: bool,
    },
    /// Make VERSION the version the optimizer loads.
    Promote {
        #[command(flatten)]
        env: EnvArg,
        /// The model's name, e.g. creative-scorer.
        #[arg(long, short = 'm')]
        model: String,
        #[arg(long)]
        version: u32,
    },
    /// Return to the version promoted before the current one.
    Rollback {
        #[command(flatten)]
        env: EnvArg,
        /// The model's name, e.g. creative-scorer.
        #[arg(long, short = 'm')]
        model: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the resources in state.
    List {
        #[command(flatten)]
        env: EnvArg,
    },
    /// Show one resource's state entry.
    Show {
        #[command(flatten)]
        env: EnvArg,
        /// e.g. bucket.data
        address: String,
    },
    /// Release a state lock left by a process that is gone. Shows the lock without LOCK_ID.
    Unlock {
        #[command(flatten)]
        env: EnvArg,
        lock_id: Option<String>,
    },
}

/// `30s`, `2m`, `1h`, `500ms` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 30s, 2m)"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        other => Err(format!("unknown unit `{other}` in `{text}` (ms, s, m, h)")),
    }
}

pub fn init_logging() {
    // Waits for AWS to settle (`infra::wait`) show by default: an apply that pauses says why.
    let filter = tracing_subscriber::EnvFilter::try_from_env("INFRA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,infra::wait=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal, not in logs and CI output.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let paths = Paths {
        envs_dir: cli.envs_dir.clone(),
        workspace: cli.workspace.clone(),
    };
    let stats = cli.stats;
    let mut used: Option<Context> = None;
    let result = match cli.command {
        Command::Plan(args) => plan::run(&paths, args, &mut used).await,
        Command::Apply(args) => apply::run(&paths, args, &mut used).await,
        Command::Drift(args) => drift::run(&paths, args, &mut used).await,
        Command::Destroy(args) => apply::destroy(&paths, args, &mut used).await,
        Command::Secret { command } => secret::run(&paths, command, &mut used).await,
        Command::Synth(args) => synth::run(&paths, args, &mut used).await,
        Command::Graph { env, format } => {
            let ctx = used.insert(Context::load_offline(&paths, &env, Packaging::Skip).await?);
            print!(
                "{}",
                match format {
                    GraphFormat::Dot => infra_core::render::graph_dot(&ctx.stack),
                    GraphFormat::Mermaid => infra_core::render::graph_mermaid(&ctx.stack),
                }
            );
            Ok(0)
        }
        Command::Models { command } => models::run(&paths, command, &mut used).await,
        Command::State { command } => state::run(&paths, command, &mut used).await,
    };
    if stats && let Some(ctx) = &used {
        let resources = ctx.stack.resources.len();
        let calls = ctx.aws.calls.total();
        eprint!("{}", ctx.aws.calls.report());
        if resources > 0 {
            eprintln!(
                "  {calls} calls for {resources} resources: {:.2} per resource",
                calls as f64 / resources as f64
            );
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Clap checks argument definitions only when a command is parsed: check them all here.
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2d").is_err());
    }
}
