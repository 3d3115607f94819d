// File: hopfieldd_process.h
//
// Starts the real hopfieldd on 127.0.0.1:0 for a test, reads the bound port
// and metrics ports from its --port_file, and stops it by process id (never
// by name). Unless the flags name a --data_dir, the server stores its banks
// in a fresh directory removed with the process object; unless they name a
// --metrics_listen, /metrics gets a free port too.
#ifndef HOPFIELD_TESTS_INTEGRATION_HOPFIELDD_PROCESS_H_
#define HOPFIELD_TESTS_INTEGRATION_HOPFIELDD_PROCESS_H_

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace hopfield::testing {

class HopfielddProcess {
 public:
  // Starts `binary` with the given extra flags; port() is 0 if it failed.
  explicit HopfielddProcess(const std::string& binary,
                            const std::vector<std::string>& flags = {}) {
    const char* tmp = std::getenv("TMPDIR");
    char dir_template[256];
    snprintf(dir_template, sizeof(dir_template), "%s/hopfieldd_test_XXXXXX",
             tmp != nullptr ? tmp : "/tmp");
    dir_ = mkdtemp(dir_template);
    port_file_ = dir_ + "/ports";
    std::vector<std::string> argv = {binary, "--listen=127.0.0.1:0",
                                     "--port_file=" + port_file_};
    bool data_dir = false;
    bool metrics = false;
    for (const std::string& flag : flags) {
      data_dir = data_dir || flag.rfind("--data_dir=", 0) == 0;
      metrics = metrics || flag.rfind("--metrics_listen=", 0) == 0;
    }
    if (!data_dir) argv.push_back("--data_dir=" + dir_ + "/data");
    // Tests run side by side: never the default metrics port.
    if (!metrics) argv.emplace_back("--metrics_listen=127.0.0.1:0");
    argv.insert(argv.end(), flags.begin(), flags.end());
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> raw;
      for (std::string& arg : argv) raw.push_back(arg.data());
      raw.push_back(nullptr);
      execv(raw[0], raw.data());
      _exit(127);
    }
    // Wait for the port file (written atomically once serving, after the
    // banks have loaded).
    for (int i = 0; i < 3000 && port_ == 0; ++i) {
      std::ifstream in(port_file_);
      std::string line;
      while (std::getline(in, line)) {
        absl::string_view view(line);
        if (absl::ConsumePrefix(&view, "grpc_port=")) {
          (void)absl::SimpleAtoi(view, &port_);
        } else if (absl::ConsumePrefix(&view, "metrics_port=")) {
          (void)absl::SimpleAtoi(view, &metrics_port_);
        }
      }
      if (port_ == 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      int status = 0;
      if (port_ == 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;  // exited early
        break;
      }
    }
  }

  ~HopfielddProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  HopfielddProcess(const HopfielddProcess&) = delete;
  HopfielddProcess& operator=(const HopfielddProcess&) = delete;

  int port() const { return port_; }
  // The /metrics port (0 with --metrics_listen= empty).
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }
  std::string target() const { return absl::StrCat("127.0.0.1:", port_); }

  // Sends `signal_number` and waits up to `timeout` for the exit; returns the
  // exit status, or -1 on timeout or death by signal.
  int StopWith(int signal_number, std::chrono::seconds timeout) {
    if (pid_ <= 0) return -1;
    kill(pid_, signal_number);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

 private:
  std::string dir_;
  std::string port_file_;
  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
};

}  // namespace hopfield::testing

#endif  // HOPFIELD_TESTS_INTEGRATION_HOPFIELDD_PROCESS_H_
