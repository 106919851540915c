#include "pkg05/l05_00.h"
#include "pkg04/l04_00.h"
#include <algorithm>
#include <numeric>

namespace l05_00 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 9) ^ (b + 45); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 45, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 5 == 0; }));
  total += l04_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l05_00:" + std::to_string(score({seed, seed * 9, 45}));
}
}  // namespace l05_00
