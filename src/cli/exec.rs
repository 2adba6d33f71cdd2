//! `drover exec POD [-c CONTAINER] [-i] [-t] -- COMMAND...`: runs a command in a pod's
//! container through the Docker API over the minion's transport. The words go to Docker as a
//! list: no shell on either side sees them. The exit code is the command's.

use super::{fail, Context, EXIT_ERROR};
use futures_util::StreamExt;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use tokio::io::AsyncWriteExt;

pub struct Options {
    pub container: Option<String>,
    /// Pass this terminal's stdin to the command.
    pub stdin: bool,
    /// Ask Docker for a terminal (with -i on a terminal: raw mode here while it runs).
    pub tty: bool,
}

pub fn run(cx: &Context, pod: &str, command: Vec<String>, opts: Options) -> ExitCode {
    if command.is_empty() {
        return fail(&"exec needs a command after `--`, e.g. drover exec POD -- ls /");
    }
    let (p, minion) = match super::get::find_pod(cx, pod) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let chosen = match super::get::choose_container(&p, opts.container.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let id = drover::minion::pods::name_in(&cx.project, &p, &chosen);
    let raw = (opts.tty && opts.stdin && std::io::stdin().is_terminal()).then(RawMode::enter);
    let runtime = super::runtime();
    let result: Result<Option<i64>, String> = runtime.block_on(async {
        let (exec_id, started) = minion
            .exec_attached(&id, command, opts.stdin, opts.tty)
            .await
            .map_err(|e| e.to_string())?;
        let bollard::exec::StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Err("Docker did not attach to the command".into());
        };
        if let (true, Some((h, w))) = (opts.tty, terminal_size()) {
            // The remote terminal starts at this one's size (not followed on resize).
            let size = bollard::query_parameters::ResizeExecOptionsBuilder::new()
                .h(h)
                .w(w)
                .build();
            let _ = minion.docker().resize_exec(&exec_id, size).await;
        }
        let feed = opts.stdin.then(|| {
            tokio::spawn(async move {
                let mut stdin = tokio::io::stdin();
                let _ = tokio::io::copy(&mut stdin, &mut input).await;
                // End of input: the command sees EOF on its stdin.
                let _ = input.shutdown().await;
            })
        });
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        while let Some(chunk) = output.next().await {
            let _ = match chunk.map_err(|e| minion.error(e).to_string())? {
                bollard::container::LogOutput::StdErr { message } => {
                    err.write_all(&message).and_then(|_| err.flush())
                }
                other => out.write_all(&other.into_bytes()).and_then(|_| out.flush()),
            };
        }
        if let Some(feed) = feed {
            feed.abort();
        }
        minion
            .exec_exit_code(&exec_id)
            .await
            .map_err(|e| e.to_string())
    });
    // A read of our stdin may still be blocked in a thread: do not wait for it.
    runtime.shutdown_background();
    drop(raw);
    match result {
        Ok(Some(code)) => ExitCode::from(u8::try_from(code).unwrap_or(EXIT_ERROR)),
        Ok(None) => fail(&format!("the command in {pod}/{chosen} left no exit code")),
        Err(e) => fail(&e),
    }
}

/// Rows and columns of the terminal on stdout, if it is one.
fn terminal_size() -> Option<(i32, i32)> {
    // SAFETY: TIOCGWINSZ fills a local winsize.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        (libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) == 0 && size.ws_row > 0)
            .then_some((i32::from(size.ws_row), i32::from(size.ws_col)))
    }
}

/// This terminal in raw mode (keys go to the remote terminal as typed), restored on drop.
struct RawMode(Option<libc::termios>);

impl RawMode {
    fn enter() -> RawMode {
        // SAFETY: tcgetattr/tcsetattr on stdin with a local struct.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return RawMode(None);
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw);
            RawMode(Some(saved))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the attributes read in `enter`.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
            }
        }
    }
}
