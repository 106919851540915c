#include "pkg05/l05_05.h"
#include "pkg05/l05_04.h"
#include <algorithm>
#include <numeric>

namespace l05_05 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 14) ^ (b + 50); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 50, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 3 == 0; }));
  total += l05_04::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l05_05:" + std::to_string(score({seed, seed * 14, 50}));
}
}  // namespace l05_05
