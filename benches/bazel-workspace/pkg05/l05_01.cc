#include "pkg05/l05_01.h"
#include "pkg05/l05_00.h"
#include <algorithm>
#include <numeric>

namespace l05_01 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 10) ^ (b + 46); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 46, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 6 == 0; }));
  total += l05_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l05_01:" + std::to_string(score({seed, seed * 10, 46}));
}
}  // namespace l05_01
