// An OpenAI-compatible chat-completions endpoint as a teacher (Foundry Local, vLLM, llama.cpp
// server, Ollama, Azure OpenAI), through Debian's cpp-httplib (HTTP and HTTPS).
#pragma once
#include <memory>
#include <string>

#include "distill/teacher.h"

namespace slmops::distill {

struct HttpOptions {
  // http(s)://host[:port][/path]. The request goes to PATH/v1/chat/completions (PATH/chat/completions
  // when PATH already ends in /v1, as servers document their base URL), or to the URL as given
  // when its path already ends in /chat/completions (Azure OpenAI's deployment URLs, whose query
  // string, e.g. ?api-version=..., is kept).
  std::string url;
  std::string model;               // the request's "model" (empty: not sent; some servers serve one model)
  std::string api_key_env;         // environment variable holding the key (empty: no key)
  int concurrency = 4;             // requests open at once, never more
  double requests_per_minute = 0;  // 0: no limit; else requests start at most this often
  int max_retries = 8;             // per answer, on 408/429/5xx, timeouts and dropped connections
  double timeout_s = 300;          // per attempt: connecting, and the longest wait for the answer's bytes
  double backoff_s = 1.0;          // first back-off; doubles per retry, with jitter, up to backoff_max_s
  double backoff_max_s = 60;
};

// Checks the options (URL form, the key variable set and non-empty) and throws Error(BadInput)
// naming the flag; sends nothing.
std::unique_ptr<Teacher> make_http_teacher(const HttpOptions& o, const Settings& s);

}  // namespace slmops::distill
