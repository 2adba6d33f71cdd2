//! `drover completion SHELL` and `drover man`: generated from the clap definition itself, so
//! they never drift from the commands.

use clap::CommandFactory;
use std::process::ExitCode;

/// Prints the completion script for a shell (clap_complete).
pub fn completion(shell: clap_complete::Shell) -> ExitCode {
    let mut command = crate::Args::command();
    clap_complete::generate(shell, &mut command, "drover", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// Prints the man page, with a page section per subcommand (clap_mangen).
pub fn man() -> ExitCode {
    let command = crate::Args::command();
    let mut out = std::io::stdout().lock();
    let written = clap_mangen::Man::new(command.clone())
        .render(&mut out)
        .and_then(|_| {
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
                // A subcommand's page is titled and invoked as `drover NAME`.
                let title: &'static str =
                    Box::leak(format!("drover-{}", sub.get_name()).into_boxed_str());
                let sub = sub
                    .clone()
                    .name(title)
                    .bin_name(format!("drover {}", sub.get_name()));
                clap_mangen::Man::new(sub).render(&mut out)?;
            }
            Ok(())
        });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => super::fail(&e),
    }
}
