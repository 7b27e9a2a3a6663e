// Fuzz target: the tokenizer.json loader and the tokenizer it builds (tokenizers/tokenizer.h).
// Input: the bytes of a tokenizer.json, optionally followed by a line "--text" and the text to
// encode (default: a short multilingual sample with a special token and digits). The target
// loads the file, encodes the text with and without special tokens and decodes the ids, with
// and without skipping special tokens.
// Findings beyond fuzz_util.h's: an id outside the vocabulary, decode output that is not
// valid UTF-8.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_util.h"
#include "tokenizers/tokenizer.h"
#include "tokenizers/unicode.h"

using namespace slmops;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::init_process();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::Scratch dir("tokenizer");
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string text = "Hello ab c. 123 <|end|> h\xC3\xA9llo \xE6\x97\xA5\xE6\x9C\xAC  \t\n<s> don't";
  const std::string_view marker = "\n--text\n";
  if (auto at = in.find(marker); at != std::string_view::npos) {
    text = std::string(in.substr(at + marker.size()));
    in = in.substr(0, at);
  }
  const auto file = dir.write("tokenizer.json", in.data(), in.size());
  fuzz::guarded([&] {
    const tok::Tokenizer t = tok::Tokenizer::load(file);
    for (bool special : {true, false}) {
      const std::vector<int32_t> ids = t.encode(text, special);
      for (int32_t id : ids)
        if (id < 0 || static_cast<size_t>(id) >= t.vocab_size())
          fuzz::finding("tokenizer id outside the vocabulary", std::to_string(id));
      for (bool skip : {false, true}) {
        const std::string back = t.decode(ids, skip);
        if (tok::valid_utf8(back) != back) fuzz::finding("tokenizer decode is not valid UTF-8", back.substr(0, 80));
      }
    }
  });
  return 0;
}
