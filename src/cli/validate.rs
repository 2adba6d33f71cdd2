//! `drover validate`: parse and validate only.

use super::{look_at_source, report_load_error, Context, EXIT_OK};
use crate::SourceArgs;
use std::process::ExitCode;

pub fn run(cx: &Context, args: &SourceArgs) -> ExitCode {
    let spec = cx.source_spec(args);
    match look_at_source(cx, &spec, args.validate) {
        Ok(drover::reconcile::project::Loaded {
            desired, commit, ..
        }) => {
            let at = commit
                .map(|c| format!(" at {}", &c[..12]))
                .unwrap_or_default();
            println!(
                "{}{at}: {} object{} valid",
                spec.describe(),
                desired.objects.len(),
                super::plural(desired.objects.len())
            );
            ExitCode::from(EXIT_OK)
        }
        Err(e) => report_load_error(e),
    }
}
