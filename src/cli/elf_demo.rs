//! `bizra-risk elf-demo`.

use super::prelude::*;
use bizra_risk::config::Config;

#[derive(clap::Args)]
pub struct ElfDemoArgs {
    /// Measured calls per operation.
    #[arg(long, default_value_t = 200_000)]
    pub calls: u64,
    /// Rules file (default: config/rules.yaml).
    #[arg(long)]
    pub rules: Option<PathBuf>,
}

pub fn run(args: ElfDemoArgs) -> anyhow::Result<ExitCode> {
    let ElfDemoArgs { calls, rules } = args;
    let rules = match rules {
        Some(path) => Arc::new(bizra_risk::elf::RuleSet::load(&path)?),
        None => bizra_risk::elf_demo::default_rules()?,
    };
    let config = Config::embedded()?;
    let cases = bizra_risk::elf_demo::cases(&config, rules.clone());
    let latencies = bizra_risk::elf_demo::latencies(&config, rules, calls.max(100))?;
    let mut stdout = std::io::stdout().lock();
    write!(
        stdout,
        "{}",
        bizra_risk::elf_demo::render(&cases, &latencies)
    )?;
    Ok(ExitCode::SUCCESS)
}
