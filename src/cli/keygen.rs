//! `bizra-risk keygen`.

use super::prelude::*;
use bizra_risk::audit::keys;

#[derive(clap::Args)]
pub struct KeygenArgs {
    #[arg(long, default_value = "out/keys/signing.key")]
    pub out: PathBuf,
}

pub fn run(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let KeygenArgs { out } = args;
    let sk = keys::generate()?;
    keys::write_new(&out, &sk)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "secret key: {} (mode 0600)", out.display())?;
    writeln!(
        stdout,
        "verifying key: {}",
        hex::encode(sk.verifying_key().as_bytes())
    )?;
    writeln!(
        stdout,
        "public key file: {}",
        keys::public_path(&out).display()
    )?;
    Ok(ExitCode::SUCCESS)
}
