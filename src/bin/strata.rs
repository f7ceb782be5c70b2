//! The `strata` command-line tool; everything it does lives in `strata::cli`.

fn main() -> std::process::ExitCode {
    strata::cli::main()
}
