//! `demo-app` — runs the service, or `demo-app healthcheck` to probe a running one.

fn main() -> std::process::ExitCode {
    // First, before any port is bound: a task of the local runtime dies with it.
    if let Err(e) = demo_app::supervised::die_with_parent() {
        eprintln!("demo-app: {e}");
        return std::process::ExitCode::from(2);
    }
    demo_app::cli::main(std::env::args().skip(1).collect())
}
