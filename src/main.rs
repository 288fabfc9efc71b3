use clap::Parser;

fn main() {
    // Before any thread starts: a few heap arenas, not 8 per core (see `siamese::heap`).
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    siamese::heap::tune(cores.clamp(2, 8) as i32);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SIAMESE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = siamese::cli::run(siamese::cli::Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
