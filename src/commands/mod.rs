//! One module per subcommand: parse → call the crates → print.

pub mod generate;
pub mod import;
pub mod lake;
pub mod progress;
pub mod schema;
pub mod validate;
