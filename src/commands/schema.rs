//! `wenming schema`: the JSON Schemas of the event contract, for integrators.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use wenming_schemas::{EventType, json_schema};

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write the schema files into (created if missing).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(dir) = args.out else {
        println!("{}", serde_json::to_string_pretty(&json_schema::catalog())?);
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: String, schema: serde_json::Value| -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(&schema)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    };
    for t in EventType::ALL {
        write(
            format!("{}.schema.json", t.name()),
            json_schema::for_type(*t),
        )?;
    }
    write("event.schema.json".into(), json_schema::catalog())?;
    eprintln!(
        "wrote {} schema files (draft 2020-12) to {}",
        EventType::ALL.len() + 1,
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
