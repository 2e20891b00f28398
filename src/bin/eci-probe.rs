//! eci-probe: asks the kernel, from inside a container, whether an operation is allowed. See
//! [`eci::probe`] for the commands.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    eci::probe::main_with(&args);
}
