// An OpenAI-compatible chat-completions endpoint as a teacher. `concurrency` worker threads, each
// with its own kept-alive connection, take requests from one shared counter; every attempt waits
// for its turn under --requests-per-minute; 408, 429, 5xx and transport failures (refused or
// dropped connections, timeouts) are retried with capped exponential back-off and jitter, and a
// Retry-After header is honoured; any other answer dooms the run.
#include "distill/http_teacher.h"

#include <httplib.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <mutex>
#include <random>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "ir/error.h"

namespace slmops::distill {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// Retry-After is honoured in full up to this; a server asking for more is better answered by
// failing now (the finished rows are kept) than by a run that seems to hang.
constexpr double kMaxRetryAfterS = 300;
// A kept-alive connection idle longer than this is closed and reopened before the next request.
// httplib notices a connection the server closed, but not one that a NAT or load balancer dropped
// without telling either end: a request written into it would wait the whole --timeout for nothing.
constexpr auto kMaxIdle = std::chrono::seconds(2);
// How much of an error answer's body a message quotes.
constexpr size_t kSnippetChars = 200;

struct Endpoint {
  bool https = false;
  std::string host;  // IPv6 literals without brackets
  int port = 80;
  std::string authority;  // host[:port] as written: the Host header and name()'s fallback
  std::string target;     // the request's path and query
  std::string url;        // where requests go, for messages
};

bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

// http(s)://host[:port][/path][?query]: the request goes to PATH/v1/chat/completions, to
// PATH/chat/completions when PATH already ends in /v1 (the base URL most servers document), or to
// PATH itself when it ends in /chat/completions (Azure OpenAI deployment URLs).
Endpoint parse_url(const std::string& url) {
  auto bad = [&](std::string_view why) {
    bad_input("--teacher {}: {} (expected http(s)://host[:port][/path])", url, why);
  };
  Endpoint e;
  size_t sep = url.find("://");
  if (sep == std::string::npos) bad("no http:// or https://");
  std::string scheme = url.substr(0, sep);
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme == "https") {
    e.https = true;
    e.port = 443;
  } else if (scheme != "http") {
    bad(fmt::format("the scheme '{}' is not http or https", scheme));
  }
  size_t start = sep + 3;
  size_t end = url.find_first_of("/?#", start);
  e.authority = url.substr(start, end == std::string::npos ? std::string::npos : end - start);
  std::string rest = end == std::string::npos ? "" : url.substr(end);
  if (e.authority.find('@') != std::string::npos) bad("user@host is not supported; pass a key with --api-key-env");
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) bad("a space or control character");
  }

  std::string port;
  bool has_port = false;
  if (!e.authority.empty() && e.authority[0] == '[') {  // [IPv6]
    size_t close = e.authority.find(']');
    if (close == std::string::npos) bad("an IPv6 address without its closing ]");
    e.host = e.authority.substr(1, close - 1);
    std::string after = e.authority.substr(close + 1);
    if (!after.empty() && after[0] != ':') bad("something other than :port after the IPv6 address");
    has_port = !after.empty();
    if (has_port) port = after.substr(1);
  } else {
    size_t colon = e.authority.find(':');
    e.host = e.authority.substr(0, colon);
    has_port = colon != std::string::npos;
    if (has_port) port = e.authority.substr(colon + 1);
  }
  if (e.host.empty()) bad("no host");
  if (has_port) {
    int p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || p < 1 || p > 65535) {
      bad(fmt::format("the port '{}' is not a number in 1..65535", port));
    }
    e.port = p;
  }

  rest = rest.substr(0, rest.find('#'));  // a fragment never goes to the server
  size_t q = rest.find('?');
  std::string path = rest.substr(0, q);
  std::string query = q == std::string::npos ? "" : rest.substr(q);
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (!ends_with(path, "/chat/completions")) {
    path += ends_with(path, "/v1") ? "/chat/completions" : "/v1/chat/completions";
  }
  // Bytes outside ASCII are percent-encoded here; httplib's own encoding (off below) would also
  // rewrite a '+' in the query.
  for (char c : path + query) {
    auto u = static_cast<unsigned char>(c);
    e.target += u < 0x80 ? std::string(1, c) : fmt::format("%{:02X}", u);
  }
  e.url = scheme + "://" + e.authority + e.target;
  return e;
}

// The start of an error answer's body on one line: newlines and tabs become spaces, runs of
// white space one space (error bodies are often pretty-printed JSON).
std::string snippet(std::string_view body) {
  std::string out;
  for (char c : body) {
    auto u = static_cast<unsigned char>(c);
    bool space = u < 0x20 || u == 0x7f || c == ' ';
    if (space) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
    if (out.size() >= kSnippetChars) break;
  }
  if (out.size() >= kSnippetChars) {
    // Cut at a whole UTF-8 character: drop continuation bytes and the lead byte they follow.
    while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
    if (!out.empty() && static_cast<unsigned char>(out.back()) >= 0xC0) out.pop_back();
    out += "...";
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out.empty() ? "(empty body)" : out;
}

bool parse_seconds(std::string_view s, double& out) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && ptr == s.data() + s.size() && std::isfinite(out) && out >= 0;
}

// Seconds the server asks us to wait, or -1: Retry-After as delay-seconds or an HTTP-date
// (RFC 9110 10.2.3), or Azure OpenAI's retry-after-ms.
double retry_after_s(const httplib::Response& r) {
  double s = 0;
  if (r.has_header("retry-after-ms") && parse_seconds(r.get_header_value("retry-after-ms"), s)) return s / 1000;
  if (!r.has_header("retry-after")) return -1;
  std::string v = r.get_header_value("retry-after");
  if (parse_seconds(v, s)) return s;
  std::tm tm{};
  const char* end = strptime(v.c_str(), "%a, %d %b %Y %H:%M:%S", &tm);
  if (end == nullptr) return -1;
  return std::max(0.0, std::difftime(timegm(&tm), std::time(nullptr)));
}

// j[key], or null when j is not an object or has no such key.
const json* member(const json* j, const char* key) {
  if (!j || !j->is_object()) return nullptr;
  auto it = j->find(key);
  return it == j->end() ? nullptr : &*it;
}
const json* member(const json& j, const char* key) { return member(&j, key); }

void raise_to(std::atomic<int64_t>& a, int64_t v) {
  int64_t cur = a.load();
  while (cur < v && !a.compare_exchange_weak(cur, v)) {
  }
}

// What the workers of one run() share.
struct RunState {
  RunState(const std::vector<Request>& r, const OnDone& d, RunStats& s) : requests(r), done(d), stats(s) {}
  const std::vector<Request>& requests;
  const OnDone& done;
  RunStats& stats;
  std::atomic<size_t> next{0};  // the next request to take
  std::atomic<int64_t> in_flight{0};
  std::atomic<bool> stopping{false};

  std::mutex mu;  // guards fatal and next_start; `wake` ends waits when the run stops
  std::condition_variable wake;
  std::exception_ptr fatal;
  Clock::time_point next_start{};  // --requests-per-minute: the earliest start of the next attempt

  void fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mu);
    if (!fatal) fatal = std::move(e);
    stopping = true;
    wake.notify_all();
  }
  // Waits until `t`; false when the run stopped meanwhile.
  bool wait_until(Clock::time_point t) {
    std::unique_lock<std::mutex> lock(mu);
    return !wake.wait_until(lock, t, [&] { return stopping.load(); });
  }
  // Takes the next start slot (one per `interval`) and waits for it; false when the run stopped.
  bool wait_turn(Clock::duration interval) {
    if (interval <= Clock::duration::zero()) return !stopping;
    Clock::time_point start;
    {
      std::lock_guard<std::mutex> lock(mu);
      start = std::max(Clock::now(), next_start);
      next_start = start + interval;
    }
    return wait_until(start);
  }
};

// One worker's connection, reopened when it sat idle too long (see kMaxIdle).
struct Connection {
  std::unique_ptr<httplib::ClientImpl> client;
  Clock::time_point last_used{};
};

class HttpTeacher final : public Teacher {
 public:
  HttpTeacher(const HttpOptions& o, const Settings& s, Endpoint e, std::string key)
      : o_(o), s_(s), e_(std::move(e)), key_(std::move(key)) {
    headers_ = {{"Host", e_.authority}, {"Accept", "application/json"}, {"User-Agent", "slmops"}};
    if (!key_.empty()) {
      // OpenAI and most servers read the bearer token; Azure OpenAI reads api-key.
      headers_.emplace("Authorization", "Bearer " + key_);
      headers_.emplace("api-key", key_);
    }
  }

  std::string name() const override { return o_.model.empty() ? e_.authority : o_.model; }

  void run(const std::vector<Request>& requests, const OnDone& done, RunStats& stats) override {
    if (requests.empty()) return;
    RunState st(requests, done, stats);
    size_t workers = std::min(requests.size(), static_cast<size_t>(std::max(1, o_.concurrency)));
    std::vector<std::thread> threads;
    threads.reserve(workers);
    try {
      for (size_t i = 0; i < workers; ++i) threads.emplace_back([&] { work(st); });
    } catch (...) {  // a thread could not start: stop the ones that did
      st.fail(std::current_exception());
    }
    for (auto& t : threads) t.join();
    if (st.fatal) std::rethrow_exception(st.fatal);
  }

 private:
  void work(RunState& st) {
    // httplib writes with plain send() (no MSG_NOSIGNAL): a write to a connection the server
    // closed would raise SIGPIPE and kill the process. Blocked in this thread, the write fails
    // with EPIPE instead and the attempt is retried.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    try {
      Connection conn;
      while (!st.stopping) {
        size_t i = st.next.fetch_add(1);
        if (i >= st.requests.size()) break;
        answer(st.requests[i], conn, st);
      }
    } catch (...) {
      st.fail(std::current_exception());
    }
  }

  httplib::ClientImpl& connect(Connection& c) const {
    if (c.client && Clock::now() - c.last_used > kMaxIdle) c.client->stop();  // closes the socket; reopened on use
    if (!c.client) {
      // ClientImpl / SSLClient from host and port rather than httplib::Client's URL parsing,
      // whose pattern accepts only lowercase schemes and IPv6 literals of digits.
      if (e_.https) {
        c.client = std::make_unique<httplib::SSLClient>(e_.host, e_.port);
      } else {
        c.client = std::make_unique<httplib::ClientImpl>(e_.host, e_.port);
      }
      if (!c.client->is_valid()) bad_input("--teacher {}: cannot set up TLS (OpenSSL)", e_.url);
      double t = std::clamp(o_.timeout_s, 0.001, 1e7);
      auto sec = static_cast<time_t>(t);
      auto usec = static_cast<time_t>((t - static_cast<double>(sec)) * 1e6);
      c.client->set_connection_timeout(sec, usec);
      c.client->set_read_timeout(sec, usec);
      c.client->set_write_timeout(sec, usec);
      c.client->set_keep_alive(true);
      // httplib writes the headers and the body in separate sends: with Nagle's algorithm the body
      // waits for the server's delayed ACK, 40 ms per request on a kept-alive connection.
      c.client->set_tcp_nodelay(true);
      c.client->set_url_encode(false);  // parse_url encoded the target
    }
    return *c.client;
  }

  ordered_json request_body(const Request& r) const {
    ordered_json b = ordered_json::object();
    if (!o_.model.empty()) b["model"] = o_.model;
    b["messages"] = r.messages;
    b["max_tokens"] = s_.max_tokens;
    b["temperature"] = s_.temperature;
    if (s_.top_p != 1.0) b["top_p"] = s_.top_p;
    if (s_.top_k > 0) b["top_k"] = s_.top_k;  // not OpenAI's; vLLM, llama.cpp and Ollama read it
    b["n"] = 1;                               // the driver makes one Request per sample
    // 31 bits: servers parse the seed as int64 (vLLM, Ollama) or uint32 (llama.cpp) and reject or
    // cut anything wider.
    b["seed"] = r.seed & 0x7fffffffu;
    if (!s_.stop.empty()) b["stop"] = s_.stop;
    if (s_.logprobs > 0) {
      b["logprobs"] = true;
      b["top_logprobs"] = s_.logprobs;
    }
    return b;
  }

  // A 2xx answer's body as a Completion; bad_input naming what is missing when it is not one.
  Completion parse(const std::string& body, const Request& r) const {
    auto bad = [&](std::string_view what) {
      bad_input("--teacher {}: the answer to {} is not a chat completion: {} (body: {})", e_.url, r.where, what,
                snippet(body));
    };
    json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) bad("not JSON");
    if (!j.is_object()) bad("not a JSON object");
    const json* choices = member(j, "choices");
    if (!choices || !choices->is_array() || choices->empty()) bad("no choices[0]");
    const json& choice = (*choices)[0];
    const json* message = member(choice, "message");
    if (!message || !message->is_object()) bad("no choices[0].message");

    Completion c;
    const json* content = member(*message, "content");
    if (content && content->is_string()) {
      c.text = content->get<std::string>();
    } else if (content && content->is_array()) {  // content parts: their text, joined
      for (const json& part : *content) {
        const json* text = member(part, "text");
        if (text && text->is_string()) c.text += text->get<std::string>();
      }
    } else if (content && !content->is_null()) {
      bad("choices[0].message.content is not a string");
    }
    const json* finish = member(choice, "finish_reason");
    c.finish_reason = finish && *finish == "length" ? "length" : "stop";
    if (const json* usage = member(j, "usage")) {
      auto count = [&](const char* key) -> int64_t {
        const json* n = member(*usage, key);
        return n && n->is_number_integer() ? n->get<int64_t>() : 0;
      };
      c.prompt_tokens = count("prompt_tokens");
      c.completion_tokens = count("completion_tokens");
    }
    const json* model = member(j, "model");
    // The server's name for what answered (it may add a version to --model); our name when it gives none.
    c.model = model && model->is_string() && !model->get_ref<const std::string&>().empty() ? model->get<std::string>()
                                                                                           : name();

    if (s_.logprobs > 0) {
      const json* tokens = member(member(choice, "logprobs"), "content");
      if (!tokens || !tokens->is_array()) {
        bad("no choices[0].logprobs.content, which --logprobs needs (does this server return log-probabilities?)");
      }
      // A token and its log-probability from {"token": ..., "logprob": ...}; false when not that.
      auto read = [](const json& t, std::string& token, double& logprob) {
        const json* tk = member(t, "token");
        const json* lp = member(t, "logprob");
        if (!tk || !tk->is_string() || !lp || !lp->is_number()) return false;
        token = tk->get<std::string>();
        logprob = lp->get<double>();
        return true;
      };
      ordered_json out = ordered_json::object();
      out["tokens"] = ordered_json::array();
      out["chosen"] = ordered_json::array();
      out["top_tokens"] = ordered_json::array();
      out["top_values"] = ordered_json::array();
      std::string token;
      double logprob = 0;
      for (const json& t : *tokens) {
        if (!read(t, token, logprob)) bad("an entry of choices[0].logprobs.content without a token and a logprob");
        out["tokens"].push_back(token);
        out["chosen"].push_back(logprob);
        ordered_json top_tokens = ordered_json::array(), top_values = ordered_json::array();
        const json* top = member(t, "top_logprobs");
        if (top && top->is_array()) {
          for (const json& alt : *top) {
            if (!read(alt, token, logprob)) bad("an entry of top_logprobs without a token and a logprob");
            top_tokens.push_back(token);
            top_values.push_back(logprob);
          }
        }
        out["top_tokens"].push_back(std::move(top_tokens));
        out["top_values"].push_back(std::move(top_values));
      }
      c.logprobs = std::move(out);
    }
    return c;
  }

  // Back-off before retry number `attempt` + 1: backoff_s * 2^attempt up to backoff_max_s, times a
  // uniform [0.5, 1] so that workers that failed together do not retry together.
  double backoff(int64_t attempt, std::mt19937_64& rng) const {
    double base = std::min(o_.backoff_s * std::ldexp(1.0, static_cast<int>(std::min<int64_t>(attempt, 60))),
                           std::max(o_.backoff_max_s, 0.0));
    return base * std::uniform_real_distribution<double>(0.5, 1.0)(rng);
  }

  static std::string describe(httplib::Error err, double timeout_s) {
    std::string name = httplib::to_string(err);
    switch (err) {
      case httplib::Error::Connection:
      case httplib::Error::ConnectionTimeout:
      case httplib::Error::SSLConnection:
        return fmt::format("cannot connect ({})", name);
      case httplib::Error::Read:
        return fmt::format("no answer ({}: the connection was dropped, or nothing came for --timeout {} s)", name,
                           timeout_s);
      case httplib::Error::Write:
        return fmt::format("the request could not be sent ({}: the connection was dropped)", name);
      default:
        return fmt::format("the request failed ({})", name);
    }
  }

  // Asks for one answer, retrying what may pass; calls `done` on success. Returns without an
  // answer when the run stops; throws what dooms it.
  void answer(const Request& r, Connection& conn, RunState& st) const {
    const std::string body = request_body(r).dump();
    // Jitter from the answer's own seed: the same run waits the same, whatever the thread order.
    std::mt19937_64 rng(r.seed ^ 0x9E3779B97F4A7C15ull);
    auto interval = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(o_.requests_per_minute > 0 ? 60.0 / o_.requests_per_minute : 0.0));
    for (int64_t attempt = 0;; ++attempt) {
      if (!st.wait_turn(interval)) return;
      st.stats.requests += 1;
      if (attempt > 0) st.stats.retries += 1;
      httplib::ClientImpl& client = connect(conn);
      raise_to(st.stats.max_in_flight, ++st.in_flight);
      httplib::Result res = client.Post(e_.target, headers_, body, "application/json");
      --st.in_flight;
      conn.last_used = Clock::now();

      std::string failure;  // what went wrong, when it may pass on a retry
      double wait_at_least = 0;
      if (!res) {
        httplib::Error err = res.error();
        if (err == httplib::Error::SSLServerVerification || err == httplib::Error::SSLLoadingCerts) {
          bad_input(
              "--teacher {}: the server's TLS certificate cannot be verified ({}: untrusted, expired or for another "
              "host name); if a private CA signed it, point SSL_CERT_FILE at that CA's certificate",
              e_.url, httplib::to_string(err));
        }
        failure = describe(err, o_.timeout_s);
      } else if (res->status >= 200 && res->status < 300) {
        Completion c = parse(res->body, r);
        c.retries = attempt;
        st.stats.prompt_tokens += c.prompt_tokens;
        st.stats.completion_tokens += c.completion_tokens;
        st.done(r, std::move(c));
        return;
      } else if (res->status == 408 || res->status == 429 || (res->status >= 500 && res->status <= 599)) {
        failure = fmt::format("HTTP {}: {}", res->status, snippet(res->body));
        wait_at_least = std::min(retry_after_s(*res), kMaxRetryAfterS);
      } else {
        std::string hint;
        if (res->status == 401 || res->status == 403) {
          hint = o_.api_key_env.empty() ? " (no key was sent: name the variable holding it with --api-key-env)"
                                        : fmt::format(" (check the key in ${})", o_.api_key_env);
        } else if (res->status == 404) {
          hint = " (check the URL's path and --model)";
        } else if (res->status >= 300 && res->status < 400 && res->has_header("location")) {
          hint = fmt::format(" (redirected to {}: give that URL)", snippet(res->get_header_value("location")));
        }
        bad_input("--teacher {}: HTTP {}{} for {} (not retried): {}", e_.url, res->status, hint, r.where,
                  snippet(res->body));
      }
      if (st.stopping) return;  // another worker doomed the run: no more attempts
      if (attempt >= o_.max_retries) {
        bad_input("--teacher {}: {}: {} failed after {} attempt{} (--max-retries {})", e_.url, failure, r.where,
                  attempt + 1, attempt == 0 ? "" : "s", o_.max_retries);
      }
      double wait = std::max(backoff(attempt, rng), wait_at_least);
      if (!st.wait_until(Clock::now() +
                         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(wait)))) {
        return;
      }
    }
  }

  HttpOptions o_;
  Settings s_;
  Endpoint e_;
  std::string key_;
  httplib::Headers headers_;
};

}  // namespace

std::unique_ptr<Teacher> make_http_teacher(const HttpOptions& o, const Settings& s) {
  Endpoint e = parse_url(o.url);
  if (o.concurrency < 1) bad_input("--concurrency {}: must be at least 1", o.concurrency);
  if (o.max_retries < 0) bad_input("--max-retries {}: must be at least 0", o.max_retries);
  if (!(o.timeout_s > 0)) bad_input("--timeout {}: must be above 0 seconds", o.timeout_s);
  if (!(o.backoff_s >= 0) || !std::isfinite(o.backoff_s)) {
    bad_input("--retry-backoff {}: must be 0 or more seconds", o.backoff_s);
  }
  if (!(o.requests_per_minute >= 0)) {
    bad_input("--requests-per-minute {}: must be 0 (no limit) or more", o.requests_per_minute);
  }
  std::string key;
  if (!o.api_key_env.empty()) {
    const char* v = std::getenv(o.api_key_env.c_str());
    if (v == nullptr) {
      bad_input("--api-key-env {}: the environment variable {} is not set", o.api_key_env, o.api_key_env);
    }
    key = v;
    // A key read from a file often keeps its newline; inside the key, CR or LF would end the header.
    while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
    while (!key.empty() && std::isspace(static_cast<unsigned char>(key.front()))) key.erase(0, 1);
    if (key.empty()) bad_input("--api-key-env {}: the environment variable {} is empty", o.api_key_env, o.api_key_env);
    if (key.find_first_of("\r\n") != std::string::npos) {
      bad_input("--api-key-env {}: the key in {} holds a line break", o.api_key_env, o.api_key_env);
    }
  }
  return std::make_unique<HttpTeacher>(o, s, std::move(e), std::move(key));
}

}  // namespace slmops::distill
