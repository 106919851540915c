#include "pkg01/l01_01.h"
#include "pkg01/l01_00.h"
#include <algorithm>
#include <numeric>

namespace l01_01 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 13) ^ (b + 10); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 10, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 5 == 0; }));
  total += l01_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l01_01:" + std::to_string(score({seed, seed * 13, 10}));
}
}  // namespace l01_01
