#include "pkg04/l04_03.h"
#include "pkg04/l04_02.h"
#include <algorithm>
#include <numeric>

namespace l04_03 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 3) ^ (b + 39); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 39, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 6 == 0; }));
  total += l04_02::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l04_03:" + std::to_string(score({seed, seed * 3, 39}));
}
}  // namespace l04_03
