//! The `coffer` binary: command line over the storage engine (and, later, the server).

mod cli;
mod output;
mod serve;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let json = args.json;
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            output::error(&e, json);
            ExitCode::from(2)
        }
    }
}
