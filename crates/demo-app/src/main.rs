//! `demo-app` — runs the service, or `demo-app healthcheck` to probe a running one.

fn main() -> std::process::ExitCode {
    demo_app::cli::main(std::env::args().skip(1).collect())
}
