use std::process::ExitCode;

fn main() -> ExitCode {
    kbuild::cli::main()
}
