// Whether this host has an RDMA device (InfiniBand, RoCE or iWARP NIC).
// A fact about the platform, asked by the UCX path (whether starting UCX
// is worth it) and by the HIXL option mapping (whether the vendor's RDMA
// protocols can run as RDMA here, or go over TCP).
#pragma once

namespace lldd {

// True if `sysfs_dir` (the kernel's list of RDMA devices) has an entry.
bool HasRdmaDevice(const char* sysfs_dir = "/sys/class/infiniband");

}  // namespace lldd
