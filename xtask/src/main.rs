//! `cargo xtask …`: developer tasks (setup, test, bench).
fn main() -> anyhow::Result<()> {
    Ok(())
}
