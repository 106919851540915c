#include "pkg01/l01_06.h"
#include "pkg01/l01_05.h"
#include <algorithm>
#include <numeric>

namespace l01_06 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 5) ^ (b + 15); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 15, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 3 == 0; }));
  total += l01_05::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l01_06:" + std::to_string(score({seed, seed * 5, 15}));
}
}  // namespace l01_06
