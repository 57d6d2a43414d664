// The process group of a run started by mpirun (Open MPI): rank, size and the collectives dsv3
// uses. A run that mpirun did not start is one process and never initialises MPI, so plain runs
// do not depend on a working MPI installation.
//
// Failure: a collective that fails throws dsv3::Error naming the rank; main() then calls
// abort_all(), which makes mpirun end every rank with that message (never a hang). A rank that
// dies is noticed by mpirun, which ends the others.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dsv3::dist {

// Initialises MPI when the process was started by mpirun; otherwise a no-op (rank 0 of 1).
void init(int* argc, char*** argv);
// Finalises MPI if init() initialised it.
void finalize();
int rank();
int size();
inline bool is_root() { return rank() == 0; }
// Whether this binary can run under mpirun (built with MPI).
bool available();

// In-place sums over all ranks (no-ops for one process). Any length: long arrays go in chunks.
void allreduce_sum(float* x, int64_t n);
void allreduce_sum(double* x, int64_t n);
void barrier();

// ZeRO-1 over a flat array split into per-rank slices (counts[r] elements at displs[r]):
// out [counts[rank]] = this rank's slice of the sum of every rank's `in` [sum of counts];
void reduce_scatter_sum(const float* in, float* out, const std::vector<int>& counts);
// every rank's slice of data gathered into all ranks' data (each rank's own slice in place);
void allgather(float* data, const std::vector<int>& counts, const std::vector<int>& displs);
// the slices `in` [counts[rank]] gathered into out [sum of counts] on rank 0 (out unused elsewhere).
void gather_to_root(const float* in, float* out, const std::vector<int>& counts, const std::vector<int>& displs);
void gather_to_root(const uint16_t* in, uint16_t* out, const std::vector<int>& counts, const std::vector<int>& displs);

// Expert parallelism (Model::ep_header). send [size * per_rank] ints, recv the same: block r of
// send goes to rank r, block r of recv came from rank r. Non-blocking underneath, waited for by
// polling: busy for spin_s seconds, then with 100 us sleeps (1 ms after another second), so a
// rank that waits long (an idle server's expert ranks) leaves its core alone. Every rank of one
// exchange must call this form (MPI does not match a non-blocking collective with a blocking one).
void alltoall_polled(const int* send, int* recv, int per_rank, double spin_s);
// Rank r gets send[sdispls[r] .. + scounts[r]); recv[rdispls[s] .. + rcounts[s]) came from rank s.
// Counts in floats. One process: the block to itself is copied.
void alltoallv(const float* send, const std::vector<int>& scounts, const std::vector<int>& sdispls, float* recv,
               const std::vector<int>& rcounts, const std::vector<int>& rdispls);
// Bytes this process has sent to other ranks through alltoallv so far (communication reports).
uint64_t bytes_sent();
// Every rank's `mine` [n] concatenated in rank order on rank 0 ([size * n]; empty elsewhere).
std::vector<double> gather_to_root(const std::vector<double>& mine);

// Ends every rank of the job with exit code `code` after printing "error: rank R: why".
[[noreturn]] void abort_all(const std::string& why, int code = 1);

}  // namespace dsv3::dist
