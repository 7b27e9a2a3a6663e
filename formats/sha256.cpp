#include "formats/sha256.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "ir/error.h"

namespace slmops::formats {

namespace {

using DigestCtx = std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)>;

DigestCtx new_digest() {
  DigestCtx ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    failure("sha256: OpenSSL could not start a digest");
  return ctx;
}

std::string finish_hex(EVP_MD_CTX* ctx) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  std::string hex;
  for (unsigned int k = 0; k < len; ++k) hex += fmt::format("{:02x}", md[k]);
  return hex;
}

}  // namespace

struct Sha256Stream::State {
  DigestCtx ctx = new_digest();
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<const unsigned char*, size_t>> pieces;  // nullptr: that many zeros
  bool closed = false;
  std::thread worker;

  void run() {
    static const std::vector<unsigned char> zeros(size_t{1} << 16, 0);
    while (true) {
      std::pair<const unsigned char*, size_t> p;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return closed || !pieces.empty(); });
        if (pieces.empty()) return;
        p = pieces.front();
        pieces.pop_front();
      }
      if (p.first) {
        EVP_DigestUpdate(ctx.get(), p.first, p.second);
      } else {
        for (size_t left = p.second; left > 0;) {
          const size_t n = std::min(left, zeros.size());
          EVP_DigestUpdate(ctx.get(), zeros.data(), n);
          left -= n;
        }
      }
    }
  }
  void push(const unsigned char* data, size_t size) {
    if (size == 0) return;
    {
      std::lock_guard<std::mutex> lock(mu);
      pieces.emplace_back(data, size);
    }
    cv.notify_one();
  }
  void close() {
    {
      std::lock_guard<std::mutex> lock(mu);
      closed = true;
    }
    cv.notify_one();
    if (worker.joinable()) worker.join();
  }
};

Sha256Stream::Sha256Stream() : s_(std::make_unique<State>()) {
  s_->worker = std::thread([state = s_.get()] { state->run(); });
}

Sha256Stream::~Sha256Stream() { s_->close(); }

void Sha256Stream::add(const void* data, size_t size) { s_->push(static_cast<const unsigned char*>(data), size); }

void Sha256Stream::add_zeros(size_t size) { s_->push(nullptr, size); }

std::string Sha256Stream::hex() {
  s_->close();
  return finish_hex(s_->ctx.get());
}

std::string sha256_hex(std::string_view bytes) {
  DigestCtx ctx = new_digest();
  if (EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) != 1) failure("sha256: OpenSSL could not hash");
  return finish_hex(ctx.get());
}

std::string sha256_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) bad_input("{}: cannot open: {}", path.string(), std::strerror(errno));
  DigestCtx ctx(nullptr, EVP_MD_CTX_free);
  try {
    ctx = new_digest();
  } catch (...) {
    ::close(fd);
    throw;
  }
  std::vector<unsigned char> buf(size_t{1} << 20);
  while (true) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      failure("{}: read error: {}", path.string(), std::strerror(e));
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return finish_hex(ctx.get());
}

}  // namespace slmops::formats
