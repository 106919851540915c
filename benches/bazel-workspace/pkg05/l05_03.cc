#include "pkg05/l05_03.h"
#include "pkg05/l05_02.h"
#include <algorithm>
#include <numeric>

namespace l05_03 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 12) ^ (b + 48); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 48, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 8 == 0; }));
  total += l05_02::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l05_03:" + std::to_string(score({seed, seed * 12, 48}));
}
}  // namespace l05_03
