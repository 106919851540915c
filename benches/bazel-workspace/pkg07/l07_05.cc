#include "pkg07/l07_05.h"
#include "pkg07/l07_04.h"
#include <algorithm>
#include <numeric>

namespace l07_05 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 6) ^ (b + 68); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 68, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 7 == 0; }));
  total += l07_04::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l07_05:" + std::to_string(score({seed, seed * 6, 68}));
}
}  // namespace l07_05
