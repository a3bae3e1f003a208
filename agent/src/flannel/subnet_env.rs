//! `/run/flannel/subnet.env` (flannel's `WriteSubnetFile`): what the node leased, for CNI
//! plugins and for finding the same subnet again after a restart. Written atomically (a
//! temporary file in the same directory, then a rename), mode 0644.
//!
//! ```text
//! FLANNEL_NETWORK=10.244.0.0/16
//! FLANNEL_SUBNET=10.244.1.1/24
//! FLANNEL_MTU=1450
//! FLANNEL_IPMASQ=false
//! ```

use std::io::Write;
use std::path::Path;

use ipnet::Ipv4Net;

use super::subnet::first_usable;

/// What subnet.env says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetEnv {
    pub network: Ipv4Net,
    /// The leased subnet (the file holds its first usable address with the prefix).
    pub subnet: Ipv4Net,
    pub mtu: u32,
    pub ip_masq: bool,
}

impl SubnetEnv {
    /// The file's text, in flannel's order.
    pub fn render(&self) -> String {
        let subnet = Ipv4Net::new(first_usable(&self.subnet), self.subnet.prefix_len())
            .unwrap_or(self.subnet);
        format!(
            "FLANNEL_NETWORK={}\nFLANNEL_SUBNET={subnet}\nFLANNEL_MTU={}\nFLANNEL_IPMASQ={}\n",
            self.network, self.mtu, self.ip_masq
        )
    }

    /// Reads the file's text; `None` unless network, subnet and MTU are all there.
    pub fn parse(text: &str) -> Option<SubnetEnv> {
        let mut network = None;
        let mut subnet = None;
        let mut mtu = None;
        let mut ip_masq = false;
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "FLANNEL_NETWORK" => network = value.parse::<Ipv4Net>().ok(),
                // `10.244.1.1/24` back to the subnet (flannel's ReadCIDRFromSubnetFile).
                "FLANNEL_SUBNET" => subnet = value.parse::<Ipv4Net>().ok().map(|n| n.trunc()),
                "FLANNEL_MTU" => mtu = value.parse().ok(),
                "FLANNEL_IPMASQ" => ip_masq = value == "true",
                _ => {}
            }
        }
        Some(SubnetEnv {
            network: network?,
            subnet: subnet?,
            mtu: mtu?,
            ip_masq,
        })
    }

    /// Reads `path`; `None` when absent or unreadable.
    pub fn read(path: &Path) -> Option<SubnetEnv> {
        SubnetEnv::parse(&std::fs::read_to_string(path).ok()?)
    }

    /// Writes `path` atomically, creating its directory: readers see the old file or the
    /// new one, never a partial one.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "subnet.env".to_string());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&tmp)?;
            file.write_all(self.render().as_bytes())?;
            file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SubnetEnv {
        SubnetEnv {
            network: "10.5.0.0/16".parse().expect("net"),
            subnet: "10.5.52.0/24".parse().expect("net"),
            mtu: 1450,
            ip_masq: false,
        }
    }

    #[test]
    fn renders_flannels_file() {
        assert_eq!(
            sample().render(),
            "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.52.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
        );
    }

    #[test]
    fn parses_back_to_the_subnet() {
        assert_eq!(SubnetEnv::parse(&sample().render()), Some(sample()));
        // flannel's own file, with IPv6 lines and a masquerading node.
        let text = "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.52.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
        let env = SubnetEnv::parse(text).expect("parse");
        assert!(env.ip_masq);
        assert_eq!(env.subnet, "10.5.52.0/24".parse::<Ipv4Net>().expect("net"));
        assert_eq!(SubnetEnv::parse("FLANNEL_NETWORK=10.5.0.0/16\n"), None);
        assert_eq!(SubnetEnv::parse(""), None);
    }

    #[test]
    fn writes_atomically_with_mode_0644() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("crs-subnet-env-{}", std::process::id()));
        let path = dir.join("run/flannel/subnet.env");
        sample().write(&path)?;
        assert_eq!(SubnetEnv::read(&path), Some(sample()));
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o644
        );
        let mut other = sample();
        other.subnet = "10.5.9.0/24".parse().expect("net");
        other.write(&path)?;
        assert_eq!(SubnetEnv::read(&path), Some(other));
        // Only the file itself is left in the directory.
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names.len(), 1);
        std::fs::remove_dir_all(&dir)
    }
}
