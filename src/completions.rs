//! Shell completions and the man page, generated from the clap definitions
//! (so they never drift from the flags).

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;

use crate::Cli;

/// `completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "devops-agent-demo", &mut buf);
    write_stdout(&buf)
}

/// Writes to stdout; a reader that closed early (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// `man [--dir DIR]`: the man page (roff) on stdout, or one page per
/// command written to DIR (`devops-agent-demo.1`, `devops-agent-demo-up.1`, ...).
pub fn man(dir: Option<&std::path::Path>) -> Result<()> {
    let cmd = Cli::command();
    let Some(dir) = dir else {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        return write_stdout(&buf);
    };
    std::fs::create_dir_all(dir)?;
    let mut pages = vec![("devops-agent-demo".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("devops-agent-demo-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut f = std::fs::File::create(&path)?;
        clap_mangen::Man::new(page).render(&mut f)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
