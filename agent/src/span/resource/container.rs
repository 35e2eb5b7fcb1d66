//! Which container (and Kubernetes pod) a process runs in, from its `/proc/<pid>/cgroup` alone:
//! the container runtimes put the container ID, and the kubelet the pod UID, in the cgroup
//! path. Covers containerd, CRI-O, Docker and Podman, with the systemd and cgroupfs drivers,
//! cgroup v1 and v2. (Pod name, namespace and owner need the Kubernetes API: not here.)

/// What the cgroup path says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The 64-hex-digit container ID (`container.id`).
    pub id: String,
    /// The pod's UID (`k8s.pod.uid`) when the kubelet made the cgroup.
    pub pod_uid: Option<String>,
}

/// The container a process runs in, from the text of its `/proc/<pid>/cgroup`.
pub fn container_of(cgroup: &str) -> Option<Container> {
    // Any hierarchy will do (v1 lists several, all with the same path for a container).
    cgroup.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        let mut id = None;
        let mut pod_uid = None;
        for segment in path.split('/') {
            if let Some(found) = container_id(segment) {
                id = Some(found);
            }
            if let Some(found) = pod_uid_of(segment) {
                pod_uid = Some(found);
            }
        }
        id.map(|id| Container { id, pod_uid })
    })
}

/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`, `libpod-<id>.scope`,
/// or a bare `<id>` (cgroupfs driver): the 64 hex digits.
fn container_id(segment: &str) -> Option<String> {
    let name = segment.strip_suffix(".scope").unwrap_or(segment);
    let id = name.rsplit('-').next()?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

/// `kubepods-burstable-pod<uid>.slice` (systemd driver: `_` for `-` in the UID) or
/// `pod<uid>` (cgroupfs driver).
fn pod_uid_of(segment: &str) -> Option<String> {
    let name = segment.strip_suffix(".slice").unwrap_or(segment);
    let uid = match name.strip_prefix("pod") {
        Some(rest) => rest,
        None => name.rsplit_once("-pod")?.1,
    }
    .replace('_', "-");
    let valid = uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| {
            matches!(i, 8 | 13 | 18 | 23) == (b == b'-') && (b == b'-' || b.is_ascii_hexdigit())
        });
    valid.then_some(uid)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const ID: &str = "3f8a2bd95c0e4c1f9d7b6a5e4d3c2b1a0f9e8d7c6b5a49382716051423324150";
    const POD: &str = "5d1a8f2e-3b4c-4d5e-8f90-a1b2c3d4e5f6";

    #[rstest]
    #[case::containerd_systemd_v2(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5d1a8f2e_3b4c_4d5e_8f90_a1b2c3d4e5f6.slice/cri-containerd-3f8a2bd95c0e4c1f9d7b6a5e4d3c2b1a0f9e8d7c6b5a49382716051423324150.scope\n",
        Some(POD)
    )]
    #[case::crio_systemd_v2(
        "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod5d1a8f2e_3b4c_4d5e_8f90_a1b2c3d4e5f6.slice/crio-3f8a2bd95c0e4c1f9d7b6a5e4d3c2b1a0f9e8d7c6b5a49382716051423324150.scope\n",
        Some(POD)
    )]
    #[case::kubelet_cgroupfs_v1(
        "12:memory:/kubepods/burstable/pod5d1a8f2e-3b4c-4d5e-8f90-a1b2c3d4e5f6/3f8a2bd95c0e4c1f9d7b6a5e4d3c2b1a0f9e8d7c6b5a49382716051423324150\n11:cpu:/kubepods/burstable/pod5d1a8f2e-3b4c-4d5e-8f90-a1b2c3d4e5f6/3f8a2bd95c0e4c1f9d7b6a5e4d3c2b1a0f9e8d7c6b5a49382716051423324150\n",
        Some(POD)
    )]
    #[case::docker_systemd_v2(
        "0::/system.slice/docker-3f8a2bd95c0e4c1f9d7b6a5e4d3c2b1a0f9e8d7c6b5a49382716051423324150.scope\n",
        None
    )]
    #[case::docker_cgroupfs_v1(
        "12:pids:/docker/3f8a2bd95c0e4c1f9d7b6a5e4d3c2b1a0f9e8d7c6b5a49382716051423324150\n",
        None
    )]
    #[case::podman(
        "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-3f8a2bd95c0e4c1f9d7b6a5e4d3c2b1a0f9e8d7c6b5a49382716051423324150.scope/container\n",
        None
    )]
    fn containers(#[case] cgroup: &str, #[case] pod: Option<&str>) {
        assert_eq!(
            container_of(cgroup),
            Some(Container {
                id: ID.to_owned(),
                pod_uid: pod.map(str::to_owned),
            })
        );
    }

    #[rstest]
    #[case::host_service("0::/system.slice/nginx.service\n")]
    #[case::user_session("0::/user.slice/user-1000.slice/session-3.scope\n")]
    #[case::short_hex("0::/system.slice/docker-3f8a2bd9.scope\n")]
    #[case::empty("")]
    fn not_in_a_container(#[case] cgroup: &str) {
        assert_eq!(container_of(cgroup), None);
    }
}
