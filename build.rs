//! Rebuilds the binary when a migration changes: `sqlx::migrate!` embeds them at compile time
//! and cannot tell cargo to watch the folder on a stable compiler.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
