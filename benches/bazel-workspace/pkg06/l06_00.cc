#include "pkg06/l06_00.h"
#include "pkg05/l05_00.h"
#include <algorithm>
#include <numeric>

namespace l06_00 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 5) ^ (b + 54); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 54, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 7 == 0; }));
  total += l05_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l06_00:" + std::to_string(score({seed, seed * 5, 54}));
}
}  // namespace l06_00
