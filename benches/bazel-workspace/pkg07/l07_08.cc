#include "pkg07/l07_08.h"
#include "pkg07/l07_07.h"
#include <algorithm>
#include <numeric>

namespace l07_08 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 9) ^ (b + 71); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 71, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 3 == 0; }));
  total += l07_07::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l07_08:" + std::to_string(score({seed, seed * 9, 71}));
}
}  // namespace l07_08
