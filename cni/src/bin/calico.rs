//! The `calico` CNI plugin binary.

fn main() {
    std::process::exit(cni::skel::run(cni::plugin::CalicoPlugin));
}
