//! The `sonde` binary: parse the command line, set up logging, run the chosen job.
fn main() -> std::process::ExitCode {
    sonde::cli::main()
}
