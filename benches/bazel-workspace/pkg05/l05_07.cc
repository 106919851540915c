#include "pkg05/l05_07.h"
#include "pkg05/l05_06.h"
#include <algorithm>
#include <numeric>

namespace l05_07 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 3) ^ (b + 52); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 52, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 5 == 0; }));
  total += l05_06::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l05_07:" + std::to_string(score({seed, seed * 3, 52}));
}
}  // namespace l05_07
