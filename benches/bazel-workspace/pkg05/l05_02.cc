#include "pkg05/l05_02.h"
#include "pkg05/l05_01.h"
#include <algorithm>
#include <numeric>

namespace l05_02 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 11) ^ (b + 47); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 47, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 7 == 0; }));
  total += l05_01::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l05_02:" + std::to_string(score({seed, seed * 11, 47}));
}
}  // namespace l05_02
