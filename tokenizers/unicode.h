// UTF-8 helpers the tokenizer needs: decoding with U+FFFD for invalid bytes (as a browser's
// TextDecoder and Rust's from_utf8_lossy read them), encoding, and character classes.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace slmops::tok {

// The code point at s[i] (advancing i past it); invalid or truncated sequences give U+FFFD
// and advance by one byte.
char32_t next_code_point(std::string_view s, size_t& i);
void append_utf8(std::string& out, char32_t cp);
// `s` with every invalid UTF-8 sequence replaced by U+FFFD (a valid string is returned as is).
std::string valid_utf8(std::string_view s);
// Bytes to text as Rust's String::from_utf8_lossy does (one U+FFFD per maximal invalid run
// prefix, as WHATWG decoders do).
inline std::string lossy_utf8(std::string_view bytes) { return valid_utf8(bytes); }

bool is_whitespace(char32_t cp);   // Unicode White_Space
bool is_punctuation(char32_t cp);  // Unicode P* categories or ASCII punctuation
bool is_word_char(char32_t cp);    // letters, marks, numbers, connector punctuation (\w)

}  // namespace slmops::tok
