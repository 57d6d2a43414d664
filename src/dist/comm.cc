#include "dist/comm.h"

#include <fmt/format.h>

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "core/error.h"

#if DSV3_HAVE_MPI
#include <mpi.h>
#endif

namespace dsv3::dist {
namespace {

int g_rank = 0, g_size = 1;
uint64_t g_bytes_sent = 0;  // through alltoallv, to other ranks
bool g_initialised = false;

// Open MPI's launcher sets these in every process it starts (PMIx for the newer ones).
bool started_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr;
}

#if DSV3_HAVE_MPI
void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail("rank {}: {} failed: {}", g_rank, what, std::string(msg, static_cast<size_t>(len)));
}

template <class T>
void allreduce(T* x, int64_t n, MPI_Datatype type) {
  if (g_size == 1) return;
  constexpr int64_t kChunk = int64_t{1} << 28;  // MPI counts are int
  for (int64_t i = 0; i < n; i += kChunk)
    check(MPI_Allreduce(MPI_IN_PLACE, x + i, static_cast<int>(std::min(kChunk, n - i)), type, MPI_SUM, MPI_COMM_WORLD),
          "MPI_Allreduce");
}
#endif

}  // namespace

bool available() {
#if DSV3_HAVE_MPI
  return true;
#else
  return false;
#endif
}

void init(int* argc, char*** argv) {
  if (!started_by_mpirun()) return;
#if DSV3_HAVE_MPI
  int provided = 0;
  // The threads MPI starts must never take the signals dsv3 handles (the server's sigwait on
  // SIGTERM/SIGINT/SIGUSR1/SIGUSR2, which mpirun forwards): a thread that does not block one
  // would take it with the default action and end the rank. They inherit this mask; the main
  // thread gets its own back afterwards.
  sigset_t sigs, old;
  sigemptyset(&sigs);
  for (int s : {SIGTERM, SIGINT, SIGUSR1, SIGUSR2}) sigaddset(&sigs, s);
  pthread_sigmask(SIG_BLOCK, &sigs, &old);
  // One thread at a time calls MPI, but not always the main one: a server's forward passes run
  // on its engine thread. OpenMP threads stay inside the ops.
  const int rc = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != MPI_SUCCESS) {
    std::fprintf(stderr, "error: MPI_Init_thread failed\n");
    std::exit(1);
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    std::fprintf(stderr, "error: this MPI library gives thread level %d; dsv3 needs MPI_THREAD_SERIALIZED\n", provided);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  g_initialised = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  // Errors come back as codes, which check() turns into exceptions naming the rank.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
#else
  (void)argc, (void)argv;
  const char* n = std::getenv("OMPI_COMM_WORLD_SIZE");
  if (n && std::atoi(n) > 1) {
    std::fprintf(stderr, "error: this dsv3 was built without MPI (install libopenmpi-dev and rebuild) but runs under mpirun -np %s\n", n);
    std::exit(1);
  }
#endif
}

void finalize() {
#if DSV3_HAVE_MPI
  if (g_initialised) MPI_Finalize();
#endif
  g_initialised = false;
}

int rank() { return g_rank; }
int size() { return g_size; }

void allreduce_sum(float* x, int64_t n) {
#if DSV3_HAVE_MPI
  allreduce(x, n, MPI_FLOAT);
#else
  (void)x, (void)n;
#endif
}

void allreduce_sum(double* x, int64_t n) {
#if DSV3_HAVE_MPI
  allreduce(x, n, MPI_DOUBLE);
#else
  (void)x, (void)n;
#endif
}

void barrier() {
#if DSV3_HAVE_MPI
  if (g_size > 1) check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#endif
}

#if DSV3_HAVE_MPI
namespace {
template <class T>
void gather_impl(const T* in, T* out, const std::vector<int>& counts, const std::vector<int>& displs, MPI_Datatype t) {
  check(MPI_Gatherv(in, counts[static_cast<size_t>(g_rank)], t, out, counts.data(), displs.data(), t, 0, MPI_COMM_WORLD),
        "MPI_Gatherv");
}
}  // namespace
#endif

// One process: the whole array is its slice, so each collective is a copy or nothing.
void reduce_scatter_sum(const float* in, float* out, const std::vector<int>& counts) {
#if DSV3_HAVE_MPI
  if (g_size > 1) {
    check(MPI_Reduce_scatter(in, out, counts.data(), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Reduce_scatter");
    return;
  }
#endif
  std::copy(in, in + counts[0], out);
}

void allgather(float* data, const std::vector<int>& counts, const std::vector<int>& displs) {
#if DSV3_HAVE_MPI
  if (g_size > 1)
    check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, counts.data(), displs.data(), MPI_FLOAT,
                         MPI_COMM_WORLD),
          "MPI_Allgatherv");
#else
  (void)data, (void)counts, (void)displs;
#endif
}

void gather_to_root(const float* in, float* out, const std::vector<int>& counts, const std::vector<int>& displs) {
#if DSV3_HAVE_MPI
  if (g_size > 1) return gather_impl(in, out, counts, displs, MPI_FLOAT);
#endif
  std::copy(in, in + counts[0], out + displs[0]);
}

void gather_to_root(const uint16_t* in, uint16_t* out, const std::vector<int>& counts, const std::vector<int>& displs) {
#if DSV3_HAVE_MPI
  if (g_size > 1) return gather_impl(in, out, counts, displs, MPI_UINT16_T);
#endif
  std::copy(in, in + counts[0], out + displs[0]);
}

void alltoall_polled(const int* send, int* recv, int per_rank, double spin_s) {
#if DSV3_HAVE_MPI
  if (g_size > 1) {
    MPI_Request req;
    check(MPI_Ialltoall(send, per_rank, MPI_INT, recv, per_rank, MPI_INT, MPI_COMM_WORLD, &req), "MPI_Ialltoall");
    const auto start = std::chrono::steady_clock::now();
    for (int done = 0;;) {
      check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (done) return;
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > spin_s) std::this_thread::sleep_for(std::chrono::microseconds(waited > spin_s + 1.0 ? 1000 : 100));
    }
  }
#endif
  (void)spin_s;
  std::copy(send, send + per_rank, recv);
}

void alltoallv(const float* send, const std::vector<int>& scounts, const std::vector<int>& sdispls, float* recv,
               const std::vector<int>& rcounts, const std::vector<int>& rdispls) {
  for (int r = 0; r < g_size; ++r)
    if (r != g_rank) g_bytes_sent += static_cast<uint64_t>(scounts[static_cast<size_t>(r)]) * sizeof(float);
#if DSV3_HAVE_MPI
  if (g_size > 1) {
    check(MPI_Alltoallv(send, scounts.data(), sdispls.data(), MPI_FLOAT, recv, rcounts.data(), rdispls.data(), MPI_FLOAT,
                        MPI_COMM_WORLD),
          "MPI_Alltoallv");
    return;
  }
#endif
  (void)rcounts;
  std::copy(send + sdispls[0], send + sdispls[0] + scounts[0], recv + rdispls[0]);
}

uint64_t bytes_sent() { return g_bytes_sent; }

std::vector<double> gather_to_root(const std::vector<double>& mine) {
  const size_t n = mine.size();
  std::vector<double> all(g_rank == 0 ? n * static_cast<size_t>(g_size) : 0);
#if DSV3_HAVE_MPI
  if (g_size > 1) {
    check(MPI_Gather(mine.data(), static_cast<int>(n), MPI_DOUBLE, all.data(), static_cast<int>(n), MPI_DOUBLE, 0,
                     MPI_COMM_WORLD),
          "MPI_Gather");
    return all;
  }
#endif
  std::copy(mine.begin(), mine.end(), all.begin());
  return all;
}

void abort_all(const std::string& why, int code) {
  std::fprintf(stderr, "error: rank %d of %d: %s\n", g_rank, g_size, why.c_str());
  std::fflush(stderr);
#if DSV3_HAVE_MPI
  if (g_initialised && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

}  // namespace dsv3::dist
