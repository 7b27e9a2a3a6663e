// Overflow-checked sizes and the allocation limit (ir/size.h), and a mapped file that shrinks
// while it is read (formats/file_util.h).
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <fstream>

#include "formats/file_util.h"
#include "ir/error.h"
#include "ir/size.h"
#include "runtime/value.h"
#include "test_util.h"

using namespace slmops;

TEST_CASE("checked element counts refuse negative dims and products past int64") {
  CHECK(ir::checked_element_count(std::vector<int64_t>{}) == 1u);
  CHECK(ir::checked_element_count(std::vector<int64_t>{2, 3, 4}) == 24u);
  CHECK(ir::checked_element_count(std::vector<int64_t>{0, int64_t{1} << 62}) == 0u);
  CHECK_FALSE(ir::checked_element_count(std::vector<int64_t>{2, -1}));
  // 2^62 x 4 = 2^64 wraps to 0 in plain uint64 arithmetic; 2^32 x 2^32 likewise.
  CHECK_FALSE(ir::checked_element_count(std::vector<int64_t>{int64_t{1} << 62, 4}));
  CHECK_FALSE(ir::checked_element_count(std::vector<int64_t>{int64_t{1} << 32, int64_t{1} << 32}));
  // Fits uint64 but not int64: refused too (sizes are also signed dimensions).
  CHECK_FALSE(ir::checked_element_count(std::vector<int64_t>{int64_t{1} << 62, 2}));
  CHECK(ir::checked_element_count(std::vector<int64_t>{INT64_MAX}) == uint64_t{INT64_MAX});
}

TEST_CASE("checked storage bytes: 2^61 floats need 2^63 bytes, 2^62 floats overflow") {
  CHECK(ir::checked_storage_bytes(ir::DType::Float, uint64_t{1} << 61) == uint64_t{1} << 63);
  CHECK_FALSE(ir::checked_storage_bytes(ir::DType::Float, uint64_t{1} << 62));
  CHECK(ir::checked_storage_bytes(ir::DType::Int4, 3) == 2u);  // packed, rounded up
}

TEST_CASE("byte sizes parse with K/M/G/T suffixes and refuse junk") {
  CHECK(ir::parse_byte_size("1000") == 1000u);
  CHECK(ir::parse_byte_size("512M") == uint64_t{512} << 20);
  CHECK(ir::parse_byte_size("16G") == uint64_t{16} << 30);
  CHECK(ir::parse_byte_size("2KiB") == 2048u);
  CHECK_FALSE(ir::parse_byte_size("2Q"));
  CHECK(ir::parse_byte_size("2KB") == 2048u);
  CHECK_FALSE(ir::parse_byte_size(""));
  CHECK_FALSE(ir::parse_byte_size("lots"));
  CHECK_FALSE(ir::parse_byte_size("99999999999999999999"));
  CHECK_FALSE(ir::parse_byte_size("17179869184T"));  // 2^34 TiB overflows
}

TEST_CASE("new_tensor refuses shapes that overflow or pass the allocation limit, naming the shape") {
  const uint64_t saved = ir::allocation_limit();
  ir::set_allocation_limit(1 << 20);
  CHECK_NOTHROW(runtime::new_tensor(ir::DType::Float, {256, 1024}));  // exactly 1 MiB
  try {
    (void)runtime::new_tensor(ir::DType::Float, {257, 1024});
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::BadInput);
    CHECK(std::string(e.what()).find("float[257, 1024]") != std::string::npos);
    CHECK(std::string(e.what()).find("memory limit") != std::string::npos);
  }
  CHECK_THROWS_AS(runtime::new_zero_tensor(ir::DType::Float, {int64_t{1} << 62, 4}), Error);
  ir::set_allocation_limit(saved);
}

TEST_CASE("a mapped file truncated while it is read ends the process with one line, not SIGBUS") {
  test::TempDir tmp;
  const auto path = tmp / "shrinks.bin";
  {
    std::ofstream out(path, std::ios::binary);
    std::string page(1 << 16, 'x');
    out << page;
  }
  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(pipefd[1], 2);
    auto f = formats::MappedFile::open(path);
    if (::truncate(path.c_str(), 0) != 0) ::_exit(10);
    volatile uint8_t sink = f->data()[40000];  // past the new end: SIGBUS
    (void)sink;
    ::_exit(11);  // not reached when the handler works
  }
  ::close(pipefd[1]);
  std::string err;
  char buf[512];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) > 0;) err.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  CHECK(err.find("shrinks.bin: the file was truncated or changed while slmops was reading it") != std::string::npos);
  CHECK(std::count(err.begin(), err.end(), '\n') == 1);
}
