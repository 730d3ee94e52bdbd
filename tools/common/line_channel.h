// A line-oriented side channel between two tool processes.
//
// The tools need a way to tell the other process which cache and blocks to
// use; that is the application's business, not the library's, so it rides
// on a plain pipe or socket, one text line per message.
#ifndef LLM_DATADIST_TOOLS_COMMON_LINE_CHANNEL_H_
#define LLM_DATADIST_TOOLS_COMMON_LINE_CHANNEL_H_

#include <string>

namespace lldd_tools {

class LineChannel {
 public:
  // Takes ownership of both descriptors (they may be the same socket).
  LineChannel(int read_fd, int write_fd);
  ~LineChannel();
  LineChannel(const LineChannel&) = delete;
  LineChannel& operator=(const LineChannel&) = delete;

  enum class ReadResult { kLine, kTimeout, kClosed };
  // Waits at most timeout_ms (forever when negative) for a whole line.
  ReadResult Read(std::string* line, int timeout_ms);
  // False on end of stream, error, or timeout.
  bool ReadLine(std::string* line, int timeout_ms = -1) { return Read(line, timeout_ms) == ReadResult::kLine; }
  bool WriteLine(const std::string& line);
  // Sends a request and returns its one-line answer ("error ..." when the
  // other side has gone).
  std::string Ask(const std::string& line, int timeout_ms = -1);

 private:
  int read_fd_;
  int write_fd_;
  std::string buffer_;
};

}  // namespace lldd_tools

#endif  // LLM_DATADIST_TOOLS_COMMON_LINE_CHANNEL_H_
