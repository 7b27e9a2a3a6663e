// Hugging Face tokenizers from tokenizer.json, in C++: the same pipeline as the `tokenizers`
// library (added tokens -> normalizer -> pre-tokenizer -> model -> post-processor; decoder
// for the way back), so the ids equal the ones the model was trained with.
//
// Components: models BPE (merges, byte_fallback, ignore_merges, fuse_unk, unk_token);
// normalizers Sequence, Prepend, Replace, NFC/NFD/NFKC/NFKD, Lowercase, Strip; pre-tokenizers
// Sequence, ByteLevel, Split (regex or string; every behavior; invert), Metaspace, Digits,
// Whitespace, WhitespaceSplit, Punctuation; post-processors TemplateProcessing, ByteLevel,
// Sequence; decoders Sequence, ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace.
// Regexes run on PCRE2 (Unicode properties), normalization on utf8proc. Any other component
// type is refused by name when the file is loaded.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace slmops::tok {

class Tokenizer {
 public:
  // `path`: a tokenizer.json, or a folder holding one (and tokenizer_config.json, whose
  // clean_up_tokenization_spaces decode follows). Throws Error(BadInput) naming the file and
  // the component or field that is wrong.
  static Tokenizer load(const std::filesystem::path& path);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text (UTF-8; invalid sequences read as U+FFFD) to ids; `add_special`: the post-processor
  // adds its special tokens (a BOS), as Hugging Face's tokenizer(text) does.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const;
  // Ids back to text through the decoder; `skip_special` drops special added tokens.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The token string of an id ("" when out of range).
  std::string token(int32_t id) const;
  size_t vocab_size() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace slmops::tok
